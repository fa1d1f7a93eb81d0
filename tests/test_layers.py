"""Attention modules: shapes, gradients, determinism, paper-specific structure, capture."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fwi_attn.nn.layers import (
    CBAM,
    AttentionGate,
    AttnProbe,
    CoordAttention,
    MaskAttention,
    PolarizedSelfAttention,
    SqueezeExcite,
    capture_attention,
    create_attn,
    list_attn,
)

NAMES = list_attn()
SHAPES = [(2, 32, 9, 11), (1, 64, 5, 7)]




def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_shape_preserved_train_and_eval(name, shape):
    m = create_attn(name, shape[1])
    x = torch.randn(shape)
    for mode in (True, False):
        y = m.train(mode)(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    m = create_attn(name, 32).train()
    x = torch.randn(2, 32, 6, 7, requires_grad=True)
    # A fixed random projection, not square().mean(): after a LayerNorm the mean square is ~1
    # whatever the input, which would starve every parameter before it of gradient.
    (m(x) * torch.randn(2, 32, 6, 7)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # A parameter the maths makes inert (a bias before a shift-invariant softmax or BatchNorm)
    # gets only rounding noise, many orders of magnitude below the others.
    largest = max((p.grad.abs().max() for p in m.parameters() if p.grad is not None), default=0.0)
    for pname, p in m.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert p.grad.abs().max() > 1e-6 * largest, f"{name}: {pname} is inert (gradient ~ rounding noise)"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name):
    x = torch.randn(2, 32, 6, 7)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(create_attn(name, 32).eval()(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_capture_returns_a_map_for_every_probe(name):
    m = create_attn(name, 32)
    probes = [k for k, mod in m.named_modules() if isinstance(mod, AttnProbe)]
    x = torch.randn(2, 32, 6, 7)
    with capture_attention(m) as maps:
        m(x)
    assert len(maps) == len(probes)
    for key, a in maps.items():
        assert a.shape == (2, 1, 6, 7), key
        assert not a.requires_grad
        assert (a >= 0).all() and (a <= 1).all()
    # Hooks are gone and probes idle after the block.
    assert all(not mod.active and not mod._forward_hooks for mod in m.modules() if isinstance(mod, AttnProbe))


def test_spatial_modules_have_probes():
    for name in ("cbam", "ca", "psa", "psa_s", "mask"):
        assert any(isinstance(mod, AttnProbe) for mod in create_attn(name, 16).modules()), name
    assert AttentionGate(8).probe is not None


def test_unknown_attention_lists_valid_names():
    with pytest.raises(ValueError) as err:
        create_attn("transformer", 16)
    for name in NAMES:
        assert name in str(err.value)


def test_none_is_identity():
    m = create_attn("none", 16, reduction=4)
    assert isinstance(m, nn.Identity)


# --- closed-form parameter counts ------------------------------------------------------------

@pytest.mark.parametrize("c,r", [(16, 16), (64, 16), (128, 4), (256, 16)])
def test_se_parameter_count(c, r):
    h = max(8, c // r)
    assert n_params(SqueezeExcite(c, reduction=r)) == 2 * c * h + h + c


@pytest.mark.parametrize("c,r", [(16, 16), (64, 16), (128, 4)])
def test_cbam_parameter_count(c, r):
    h = max(8, c // r)
    assert n_params(CBAM(c, reduction=r)) == (2 * c * h + h + c) + (2 * 7 * 7 + 1)


@pytest.mark.parametrize("c,r", [(16, 32), (64, 32), (512, 32), (128, 8)])
def test_ca_parameter_count(c, r):
    m = max(8, c // r)
    assert n_params(CoordAttention(c, reduction=r)) == 3 * c * m + 2 * m + 2 * c


@pytest.mark.parametrize("c", [16, 64])
def test_psa_parameter_count(c):
    h = c // 2
    expected = (c * h + h) + c + (h * c + c) + 2 * c + 2 * (c * h + h)
    assert n_params(PolarizedSelfAttention(c)) == expected


# --- CBAM is CBAM (not BAM) ------------------------------------------------------------------

def test_cbam_spatial_conv_is_7x7_over_two_descriptors():
    conv = CBAM(32).spatial.conv
    assert conv.kernel_size == (7, 7) and conv.in_channels == 2 and conv.out_channels == 1
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in CBAM(32).modules())


def test_cbam_channel_attention_uses_average_and_max_pooling():
    ca = CBAM(8).channel
    base = torch.zeros(1, 8, 4, 4)
    base[..., 0, 0] = 4.0  # mean 0.25, max 4
    other = torch.full((1, 8, 4, 4), 0.25)  # same mean, max 0.25
    assert torch.allclose(base.mean((2, 3)), other.mean((2, 3)))
    assert not torch.allclose(ca(base), ca(other)), "channel weights ignore max pooling"
    same_max = base.clone()
    same_max[..., 1, 1] = 4.0  # max still 4, mean 0.5
    assert not torch.allclose(ca(base), ca(same_max)), "channel weights ignore average pooling"


def test_cbam_spatial_attention_uses_channel_mean_and_max():
    sa = CBAM(8).spatial
    a = torch.zeros(1, 8, 5, 5)
    a[:, 0] = 8.0  # channel mean 1, max 8
    b = torch.ones(1, 8, 5, 5)  # channel mean 1, max 1
    assert torch.allclose(a.mean(1), b.mean(1))
    assert not torch.allclose(sa(a), sa(b)), "spatial map ignores the channel max"
    c = torch.zeros(1, 8, 5, 5)
    c[:, 0] = 8.0
    c[:, 1] = 8.0  # mean 2, max 8
    assert not torch.allclose(sa(a), sa(c)), "spatial map ignores the channel mean"


# --- PSA follows the paper's (unfolded) equations ---------------------------------------------

@pytest.mark.parametrize("layout", ["parallel", "sequential"])
def test_psa_matches_the_unfolded_definition(layout):
    m = PolarizedSelfAttention(16, layout=layout)
    x = torch.randn(2, 16, 5, 6)

    def conv(lin, t):  # a 1x1 conv with a Linear's weights
        return torch.einsum("oc,bchw->bohw", lin.weight, t) + lin.bias.view(1, -1, 1, 1)

    def w_ch(t):
        b, c, h, w = t.shape
        v = conv(m.ch_wv, t).flatten(2)  # [B, C/2, HW]
        q = torch.softmax(m.ch_wq(t).flatten(2), dim=-1)  # [B, 1, HW]
        z = conv(m.ch_wz, (v @ q.transpose(1, 2)).unsqueeze(-1))  # [B, C, 1, 1]
        return torch.sigmoid(m.ch_norm(z.flatten(1))).view(b, c, 1, 1)

    def w_sp(t):
        b, c, h, w = t.shape
        q = torch.softmax(conv(m.sp_wq, t).mean((2, 3)), dim=1)  # pool after Wq, as the paper
        v = conv(m.sp_wv, t).flatten(2)
        return torch.sigmoid(q.unsqueeze(1) @ v).view(b, 1, h, w)

    if layout == "parallel":
        expected = x * w_ch(x) + x * w_sp(x)
    else:
        y = x * w_ch(x)
        expected = y * w_sp(y)
    torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)


def test_psa_rejects_unknown_layout():
    with pytest.raises(ValueError, match="layout"):
        PolarizedSelfAttention(8, layout="diagonal")


# --- mask attention ---------------------------------------------------------------------------

def test_mask_attention_matches_reference_multihead_computation():
    m = MaskAttention(16, num_heads=4).eval()
    x = torch.randn(2, 16, 3, 5)
    b, c, h, w = x.shape
    n, d = h * w, c // 4
    t = x.flatten(2).transpose(1, 2)
    q, k, v = m.qkv(t).view(b, n, 3, 4, d).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # head dim, not channel count
    scores = scores + F.logsigmoid(m.mask_head(x)).view(b, 1, 1, n)
    a = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, n, c)
    t = m.norm1(t + m.proj(a))
    t = m.norm2(t + m.ffn(t))
    torch.testing.assert_close(m(x), t.transpose(1, 2).reshape(b, c, h, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hard", [False, True])
def test_mask_head_receives_gradient(hard):
    m = MaskAttention(16, hard=hard).train()
    m(torch.randn(2, 16, 4, 4)).square().mean().backward()
    for p in m.mask_head.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_mask_changes_output_and_eval_is_deterministic():
    m = MaskAttention(16).eval()
    x = torch.randn(2, 16, 4, 5)
    y1, y2 = m(x), m(x)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    with torch.no_grad():
        m.mask_head.weight.mul_(-3.0)
        m.mask_head.bias.add_(2.0)
    assert not torch.allclose(m(x), y1, atol=1e-4)
    # Batch size does not leak into the mask (it is computed per sample, not cached).
    torch.testing.assert_close(m(x[:1]), m(x)[:1], rtol=1e-5, atol=1e-5)


def test_hard_mask_excludes_rejected_keys():
    m = MaskAttention(8, num_heads=4, hard=True).eval()
    x = torch.randn(1, 8, 2, 3)
    with torch.no_grad():
        m.mask_head.weight.zero_()
        m.mask_head.bias.fill_(-5.0)  # every key below threshold ...
    logits = m.mask_head(x).flatten()
    bias = m.key_bias(logits)
    assert (bias <= -1e4 + 1).all()  # ... is rejected, yet the output stays finite
    assert torch.isfinite(m(x)).all()
    soft = MaskAttention(8, num_heads=4, hard=False)
    assert torch.allclose(soft.key_bias(logits), F.logsigmoid(logits))


def test_mask_attention_validates_heads():
    with pytest.raises(ValueError, match="divisible"):
        MaskAttention(18, num_heads=4)


# --- attention gate ---------------------------------------------------------------------------

def test_attention_gate_shapes_gradients_and_map():
    gate = AttentionGate(8, gate_channels=16)
    skip = torch.randn(2, 8, 10, 12, requires_grad=True)
    g = torch.randn(2, 16, 5, 6, requires_grad=True)
    with capture_attention(gate) as maps:
        out = gate(skip, g)
    assert out.shape == skip.shape
    (alpha,) = maps.values()
    assert alpha.shape == (2, 1, 10, 12)
    torch.testing.assert_close(out, skip * alpha)
    out.square().mean().backward()
    assert g.grad.abs().sum() > 0
    for pname, p in gate.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_attention_gate_resampling_commutes_with_wg():
    gate = AttentionGate(4, gate_channels=6)
    skip, g = torch.randn(1, 4, 8, 8), torch.randn(1, 6, 4, 4)
    g_up = F.interpolate(g, size=(8, 8), mode="bilinear", align_corners=False)
    alpha = torch.sigmoid(gate.psi(F.relu(gate.w_x(skip) + gate.w_g(g_up))))
    torch.testing.assert_close(gate(skip, g), skip * alpha, rtol=1e-5, atol=1e-6)
