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
    MaskedQueryAttention,
    MixAttention,
    PolarizedSelfAttention,
    SaltQueries,
    SqueezeExcite,
    TokenAttention,
    capture_attention,
    create_attn,
    list_attn,
    salt_attention_mask,
    sine_positions,
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

@pytest.mark.parametrize("pos", ["sine", "none"])
def test_mask_attention_matches_reference_multihead_computation(pos):
    m = MaskAttention(16, num_heads=4, pos=pos).eval()
    if pos == "sine":
        with torch.no_grad():
            m.pos_scale.fill_(0.7)
    x = torch.randn(2, 16, 3, 5)
    b, c, h, w = x.shape
    n, d = h * w, c // 4
    t = x.flatten(2).transpose(1, 2)
    # Positions go into queries and keys, not values (DETR, Mask2Former).
    qk_in = t + 0.7 * sine_positions(h, w, c) if pos == "sine" else t
    q, k, _ = m.qkv(qk_in).view(b, n, 3, 4, d).permute(2, 0, 3, 1, 4)
    _, _, v = m.qkv(t).view(b, n, 3, 4, d).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # head dim, not channel count
    scores = scores + F.logsigmoid(m.mask_head(x)).view(b, 1, 1, n)
    a = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, n, c)
    t = m.norm1(t + m.proj(a))
    t = m.norm2(t + m.ffn(t))
    torch.testing.assert_close(m(x), t.transpose(1, 2).reshape(b, c, h, w), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hard", [False, True])
def test_mask_attention_gradients_match_the_explicit_softmax(hard):
    # The result and every gradient, the mask head's included, are those of
    # softmax(q.k / sqrt(d) + bias) v, with the soft or the straight-through hard bias.
    torch.manual_seed(3)
    m = MaskAttention(16, num_heads=4, hard=hard).train()
    with torch.no_grad():
        m.mask_head.bias.fill_(0.2)  # some keys on either side of the hard threshold
    x = torch.randn(2, 16, 4, 5)

    def reference(x):
        b, c, h, w = x.shape
        n, d = h * w, c // 4
        t = x.flatten(2).transpose(1, 2)
        qk_in = t + m.pos_scale * sine_positions(h, w, c)
        w_qk, w_v = m.qkv.weight.split([2 * c, c])
        q, k = F.linear(qk_in, w_qk, torch.cat([m.q_bias, torch.zeros_like(m.q_bias)])).view(
            b, n, 2, 4, d).permute(2, 0, 3, 1, 4)
        v = F.linear(t, w_v, m.v_bias).view(b, n, 4, d).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + m.key_bias(m.mask_head(x)).view(b, 1, 1, n)
        a = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(b, n, c)
        t = m.norm1(t + m.proj(a))
        return m.norm2(t + m.ffn(t)).transpose(1, 2).reshape(b, c, h, w)

    weights = torch.randn(2, 16, 4, 5)
    grads = []
    for fn in (m, reference):
        m.zero_grad()
        out = fn(x)
        (out * weights).sum().backward()
        grads.append((out.detach(), {k: p.grad.clone() for k, p in m.named_parameters()}))
    (out_a, grad_a), (out_b, grad_b) = grads
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-5)
    assert grad_a["mask_head.weight"].abs().sum() > 0
    for name in grad_b:
        torch.testing.assert_close(grad_a[name], grad_b[name], rtol=1e-4, atol=1e-5, msg=name)


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


def test_mask_attention_positions_tell_positions_apart():
    """Without positions, permuting the tokens permutes the output; with them it does not."""
    torch.manual_seed(0)
    x = torch.randn(1, 16, 4, 4)
    flipped = x.flip(-1)
    for pos, equivariant in (("none", True), ("sine", False)):
        m = MaskAttention(16, pos=pos).eval()
        same = torch.allclose(m(flipped), m(x).flip(-1), atol=1e-5)
        assert same == equivariant, pos
    with pytest.raises(ValueError, match="pos must be"):
        MaskAttention(16, pos="rope")


# --- token attention pieces -------------------------------------------------------------------

def test_sine_positions_encode_rows_then_columns():
    pos = sine_positions(3, 5, 10).view(3, 5, 10)
    assert pos.shape == (3, 5, 10)
    # The first half varies with the row only, the second with the column only.
    assert torch.equal(pos[:, :1, :5].expand(3, 5, 5), pos[..., :5])
    assert torch.equal(pos[:1, :, 5:].expand(3, 5, 5), pos[..., 5:])
    assert len({tuple(p.tolist()) for p in pos.view(15, 10)}) == 15  # every position distinct
    # DETR's normalised form: angle of the first frequency is 2 pi * (i + 1) / n.
    torch.testing.assert_close(pos[:, 0, 0], torch.sin(2 * math.pi * torch.arange(1, 4) / 3.0), atol=1e-5, rtol=0)
    assert sine_positions(2, 2, 7)[:, -1].abs().sum() == 0  # odd width: the last channel is zero


def test_token_attention_matches_its_weights_and_parameter_count():
    torch.manual_seed(0)
    attn = TokenAttention(16, num_heads=4)
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    mask = torch.rand(2, 1, 1, 7) > 0.3
    mask[..., 0] = True
    w = attn.weights(q, kv, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 5))
    assert (w.masked_select(~mask.expand_as(w)) == 0).all()
    v = attn._heads(attn.v(kv))
    expected = attn.out((w @ v).transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attn(q, kv, kv, mask), expected, rtol=1e-5, atol=1e-5)
    assert n_params(attn) == 4 * 16 * 16 + 3 * 16  # no key bias


# --- m2f: masked attention guided by the coarser level's salt ----------------------------------

M2F_C, M2F_D = 32, 16


def m2f_inputs(batch: int = 2, h: int = 8, w: int = 10):
    torch.manual_seed(0)
    x = torch.randn(batch, M2F_C, h, w)
    queries = SaltQueries(4, M2F_D)(x)
    return x, queries


def test_salt_attention_mask_thresholds_resizes_dilates_and_falls_back():
    logits = torch.full((2, 1, 4, 4), -5.0)
    logits[0, 0, 1, 1] = 5.0  # sample 0: one salt cell; sample 1: no salt predicted
    mask = salt_attention_mask(logits, (8, 8), band=0)
    assert mask.shape == (2, 1, 8, 8) and mask.dtype == torch.bool
    assert mask[0].sum() == 4 and mask[0, 0, 2:4, 2:4].all()  # one coarse cell = 2 x 2 fine cells
    assert mask[1].all()  # empty prediction: attend everywhere
    banded = salt_attention_mask(logits, (8, 8), band=1)
    assert banded[0].sum() == 16 and banded[0, 0, 1:5, 1:5].all()
    at_half = torch.zeros(1, 1, 2, 2)  # probability exactly 0.5 is not salt -> empty -> everywhere
    assert salt_attention_mask(at_half, (2, 2), band=0).all()


def test_m2f_layer_shapes_gradients_and_parameter_count():
    block = MaskedQueryAttention(M2F_C, M2F_D, num_heads=4, mlp_ratio=2.0).train()
    x, (q, q_pos) = m2f_inputs()
    x.requires_grad_(True)
    logits = torch.randn(2, 1, 4, 5)
    y, (q2, q_pos2) = block(x, logits, (q, q_pos))
    assert y.shape == x.shape and q2.shape == q.shape and q_pos2 is q_pos
    ((y * torch.randn(y.shape)).sum() + (q2 * torch.randn(q2.shape)).sum()).backward()
    assert x.grad.abs().sum() > 0
    largest = max(p.grad.abs().max() for p in block.parameters())
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 1e-6 * largest, name
    c, d, hidden = M2F_C, M2F_D, 2 * M2F_D
    attn = 4 * d * d + 3 * d
    assert n_params(block) == (c * d + d) + 3 * attn + 3 * 2 * d + (2 * d * hidden + hidden + d) + (d * c + c)


def test_m2f_layer_attends_only_inside_the_predicted_salt():
    """Keys outside the coarser level's salt do not matter; inside they do."""
    block = MaskedQueryAttention(M2F_C, M2F_D, band=0).eval()
    x, queries = m2f_inputs(batch=1)
    logits = torch.full((1, 1, 4, 5), -5.0)
    logits[..., 1:3, 1:3] = 5.0  # salt at fine cells [2:6, 2:6]
    with torch.no_grad():
        _, (q_ref, _) = block(x, logits, queries)
        outside = x.clone()
        outside[..., 6:, :] += 3.0
        _, (q_out, _) = block(outside, logits, queries)
        inside = x.clone()
        inside[..., 3, 3] += 3.0
        _, (q_in, _) = block(inside, logits, queries)
    torch.testing.assert_close(q_out, q_ref, rtol=0, atol=1e-6)  # the queries never saw the change
    assert not torch.allclose(q_in, q_ref, atol=1e-4)


def test_m2f_layer_with_an_empty_predicted_mask_attends_everywhere():
    block = MaskedQueryAttention(M2F_C, M2F_D, band=2).eval()
    x, queries = m2f_inputs()
    no_salt = torch.full((2, 1, 4, 5), -5.0)
    all_salt = torch.full((2, 1, 4, 5), 5.0)
    with torch.no_grad(), capture_attention(block) as maps:
        y_empty, _ = block(x, no_salt, queries)
        assert next(iter(maps.values())).eq(1).all()
    with torch.no_grad():
        y_all, _ = block(x, all_salt, queries)
    torch.testing.assert_close(y_empty, y_all, rtol=0, atol=0)


def test_m2f_layer_mask_follows_the_salt_prediction_and_is_deterministic():
    block = MaskedQueryAttention(M2F_C, M2F_D, band=1).eval()
    x, queries = m2f_inputs()
    a, b = torch.full((2, 1, 4, 5), -5.0), torch.full((2, 1, 4, 5), -5.0)
    a[..., 0, 0], b[..., 3, 4] = 5.0, 5.0
    with torch.no_grad():
        with capture_attention(block) as maps:
            ya, _ = block(x, a, queries)
            mask_a = next(iter(maps.values())).clone()
            ya2, _ = block(x, a, queries)
        with capture_attention(block) as maps:
            yb, _ = block(x, b, queries)
            mask_b = next(iter(maps.values()))
    torch.testing.assert_close(ya, ya2, rtol=0, atol=0)
    assert mask_a.shape == (2, 1, 8, 10)
    torch.testing.assert_close(mask_a, salt_attention_mask(a, (8, 10), 1).float())
    assert not torch.equal(mask_a, mask_b) and not torch.allclose(ya, yb, atol=1e-5)


def test_m2f_count_macs_counts_its_matmuls():
    from fwi_attn.nn.models import count_macs

    class Wrapped(nn.Module):  # count_macs calls a module on one input
        def __init__(self):
            super().__init__()
            self.queries = SaltQueries(4, M2F_D)
            self.block = MaskedQueryAttention(M2F_C, M2F_D, mlp_ratio=2.0)

        def forward(self, x):
            return self.block(x, torch.ones(x.shape[0], 1, 2, 2), self.queries(x))[0]

    c, d, n, nq, hidden = M2F_C, M2F_D, 6 * 7, 4, 2 * M2F_D
    expected = (n * c * d                                     # input projection
                + (nq * d * d + 2 * n * d * d + 2 * nq * n * d + nq * d * d)      # masked cross-attention
                + (3 * nq * d * d + 2 * nq * nq * d + nq * d * d)                 # self-attention
                + 2 * nq * d * hidden                                             # FFN
                + (n * d * d + 2 * nq * d * d + 2 * n * nq * d + n * d * d)       # read-out
                + n * d * c)                                                       # back to C
    assert count_macs(Wrapped(), (1, c, 6, 7)) == expected


# --- mixformer: mix-attention --------------------------------------------------------------------

def test_mix_ffn_mixes_exactly_the_3x3_neighbourhood_through_a_depthwise_conv():
    """Linear, 3x3 depthwise conv, GELU, linear: changing one token changes the output at that
    token and its 8 neighbours and nowhere else (a plain FFN would change only that token)."""
    from fwi_attn.nn.layers.mix import MixFFN

    torch.manual_seed(0)
    d, hidden, h, w = 6, 12, 6, 7
    ffn = MixFFN(d, hidden)
    conv = ffn.dwconv
    assert conv.kernel_size == (3, 3) and conv.groups == hidden == conv.in_channels == conv.out_channels
    assert [type(m).__name__ for m in ffn.children()] == ["Linear", "Conv2d", "GELU", "Linear"]
    x = torch.randn(2, h * w, d)
    y = ffn(x, (h, w))
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 2 * w + 3] += torch.randn(d)  # the token at row 2, column 3
    changed = (ffn(x2, (h, w)) - y).abs().amax((0, 2)).view(h, w) > 1e-6
    expected = torch.zeros(h, w, dtype=torch.bool)
    expected[1:4, 2:5] = True
    assert torch.equal(changed, expected)
    assert n_params(ffn) == (d * hidden + hidden) + (9 * hidden + hidden) + (hidden * d + d)


def test_mix_attention_concatenates_the_pooled_sources_along_channels():
    """Every source is pooled to one common grid and through its own 1x1 conv; the key tokens are
    the grid's positions, ``sum C_s`` channels wide (not one token set per source)."""
    torch.manual_seed(0)
    dims = [4, 8, 16]
    block = MixAttention(8, dims, num_heads=2, pool=3).eval()
    sources = [torch.randn(2, c, 12 // 2**i, 14 // 2**i) for i, c in enumerate(dims)]  # 12x14, 6x7, 3x3
    kv, grid = block.mix(sources)
    assert grid == (3, 3) and kv.shape == (2, 9, sum(dims))
    assert block.attn.k.in_features == block.attn.v.in_features == sum(dims)
    start = 0
    for conv, s, c in zip(block.reduce, sources, dims):
        expected = conv(F.adaptive_avg_pool2d(s, grid)).flatten(2).transpose(1, 2)
        torch.testing.assert_close(kv[..., start:start + c], expected)
        start += c
    # The grid is capped by the smallest source, never enlarged: a 2 x 2 source sets a 2 x 2 grid.
    small = [torch.randn(1, 4, 12, 14), torch.randn(1, 8, 2, 2), torch.randn(1, 16, 6, 7)]
    kv, grid = block.mix(small)
    assert grid == (2, 2) and kv.shape == (1, 4, sum(dims))
    with pytest.raises(ValueError, match="sources"):
        block.mix(sources[:2])


def test_mix_attention_shapes_gradients_and_parameter_count():
    torch.manual_seed(0)
    d, dims, hidden = 16, [8, 16, 32], 32
    block = MixAttention(d, dims, num_heads=4, mlp_ratio=2.0, pool=3).train()
    q = torch.randn(2, d, 6, 7, requires_grad=True)
    sources = [torch.randn(2, c, 12 // 2**i, 14 // 2**i, requires_grad=True) for i, c in enumerate(dims)]
    y = block(q, sources)
    assert y.shape == q.shape
    (y * torch.randn(y.shape)).sum().backward()
    assert all(t.grad.abs().sum() > 0 for t in [q, *sources])
    largest = max(p.grad.abs().max() for p in block.parameters())
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 1e-6 * largest, name
    c = sum(dims)
    expected = (sum(k * k + k for k in dims)                       # per-source 1x1 convs
                + 2 * d + 2 * c + 2 * d                             # LayerNorms: queries, mix, FFN
                + (d * d + d) + c * d + (c * d + d) + (d * d + d)   # q, k (no bias), v, out
                + (d * hidden + hidden) + 10 * hidden + (hidden * d + d))  # Mix-FFN
    assert n_params(block) == expected
    with pytest.raises(ValueError, match="pool"):
        MixAttention(d, dims, pool=0)


def test_mix_attention_map_follows_the_keys_and_counts_macs():
    from fwi_attn.nn.models import count_macs

    torch.manual_seed(0)
    d = 16
    block = MixAttention(d, [d, d], pool=4).eval()
    q = torch.randn(1, d, 5, 6)
    early = torch.randn(1, d, 8, 8)
    with torch.no_grad(), capture_attention(block) as maps:
        block(q, [q, early])
        before = next(iter(maps.values())).clone()
        block(q, [q, early + torch.randn(1, d, 8, 8)])
        after = next(iter(maps.values()))
    assert before.shape == (1, 1, 5, 6) and before.max() == 1 and before.min() >= 0
    assert not torch.allclose(before, after, atol=1e-4)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = MixAttention(d, [d, d], mlp_ratio=4.0, pool=4)

        def forward(self, x):
            return self.block(x, [x, x])

    n, m, c, hidden = 5 * 6, 4 * 4, 2 * d, 4 * d  # two 5 x 6 sources pooled to one 4 x 4 grid
    expected = (2 * m * d * d                       # the sources' 1x1 convs
                + n * d * d + 2 * m * c * d         # q; k and v from the concatenated channels
                + 2 * n * m * d + n * d * d         # Q K^T, A V, out
                + n * d * hidden + 9 * n * hidden + n * hidden * d)  # Mix-FFN (depthwise conv)
    assert count_macs(Wrapped(), (1, d, 5, 6)) == expected
