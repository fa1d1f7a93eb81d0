"""Model registry: shapes, gradients, determinism, attention capture, checkpoints, costs."""
from __future__ import annotations

import argparse
import math

import pytest
import torch
from torch import nn

from fwi_attn.nn.layers import AttnProbe, MaskAttention, MaskedQueryAttention, capture_attention, salt_attention_mask
from fwi_attn.nn.models import (
    OPENFWI_SHAPE,
    CheckpointError,
    InversionNet,
    UMixFormer,
    UNet,
    count_macs,
    count_params,
    create_model,
    list_models,
    load_model,
    save_checkpoint,
)

NAMES = list_models()
# Small widths keep every test fast; both keys are shared hyper-parameters (each model takes one).
SMALL = dict(width=4, width_mult=0.125)
SALT = dict(in_shots=29, nt=64, n_receivers=31, nz=101, nx=151)
SHAPES = {"openfwi": OPENFWI_SHAPE, "salt_odd": SALT}




def gathers(shape: dict, batch: int) -> torch.Tensor:
    return torch.randn(batch, shape["in_shots"], shape["nt"], shape["n_receivers"])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape_name", list(SHAPES))
def test_output_shape_train_and_eval(name, shape_name):
    shape = SHAPES[shape_name]
    model = create_model(name, **shape, **SMALL)
    expected = (shape["nz"], shape["nx"])
    y = model.train()(gathers(shape, 2))
    assert y.shape == (2, 1, *expected)
    with torch.no_grad():
        y = model.eval()(gathers(shape, 1))
    assert y.shape == (1, 1, *expected)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    model = create_model(name, **SALT, **SMALL).train()
    # The salt logits too: m2f's salt heads steer its attention through a binary mask, so only
    # the auxiliary salt loss trains them.
    y, salt = model(gathers(SALT, 2), salt=True)
    loss = (y * torch.randn(y.shape)).sum() + sum((s * torch.randn(s.shape)).sum() for s in salt)
    loss.backward()
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"
    # An inert parameter (e.g. a conv bias right before BatchNorm) gets only rounding noise.
    largest = max(p.grad.abs().max() for p in model.parameters())
    inert = [k for k, p in model.named_parameters() if p.grad.abs().max() <= 1e-6 * largest]
    if name == "inversionnet":
        # OpenFWI's blocks put a biased conv before BatchNorm; kept so that parameter counts
        # and state dicts match OpenFWI's InversionNet exactly.
        inert = [k for k in inert if not k.endswith("layers.0.bias")]
    assert not inert, f"{name}: parameters with ~zero gradient: {inert}"


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name):
    x = gathers(SALT, 1)
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        with torch.no_grad():
            outs.append(create_model(name, **SALT, **SMALL).eval()(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_model_records_its_name_and_constructor_arguments(name):
    model = create_model(name, **SALT, **SMALL)
    assert model.variant == name
    assert {k: model.config[k] for k in SALT} == SALT
    rebuilt = type(model)(**model.config)
    assert count_params(rebuilt) == count_params(model)


@pytest.mark.parametrize("name", NAMES)
def test_capture_returns_a_map_for_every_probe(name):
    model = create_model(name, **SALT, **SMALL).eval()
    probes = [k for k, m in model.named_modules() if isinstance(m, AttnProbe)]
    with torch.no_grad(), capture_attention(model) as maps:
        model(gathers(SALT, 2))
    assert sorted(maps) == sorted(k.rpartition(".")[0] for k in probes)
    for key, a in maps.items():
        assert a.dim() == 4 and a.shape[:2] == (2, 1), key
    expect_maps = {"none": False, "none_wide": False, "se": False, "inversionnet": False}.get(name, True)
    assert bool(maps) == expect_maps
    if isinstance(model, (UNet, UMixFormer)):
        on_grid = model.maps_on_model_grid(maps)
        assert all(m.shape == (2, 1, SALT["nz"], SALT["nx"]) for m in on_grid.values())


def test_capture_keys_name_the_hook_points():
    decoder_side = {"bottleneck.attn", "decoder.0.attn", "decoder.1.attn", "decoder.2.attn"}
    model = create_model("cbam", **SALT, width=4)  # the study's placement
    with torch.no_grad(), capture_attention(model) as maps:
        model(gathers(SALT, 1))
    assert set(maps) == decoder_side
    model = create_model("cbam", **SALT, width=4, attn_points=("encoder", "bottleneck", "decoder"))
    with torch.no_grad(), capture_attention(model) as maps:
        model(gathers(SALT, 1))
    assert set(maps) == decoder_side | {"encoder.0.attn", "encoder.1.attn", "encoder.2.attn"}
    gate = create_model("gate", **SALT, width=4)
    with torch.no_grad(), capture_attention(gate) as maps:
        gate(gathers(SALT, 1))
    assert set(maps) == {"decoder.0.gate", "decoder.1.gate", "decoder.2.gate"}


@pytest.mark.parametrize("levels", [None, 3, 1])
def test_mask_attention_only_at_coarse_scales(levels):
    model = create_model("mask", **SALT, width=4, depth=3, attn_levels=levels)
    placed = sorted(k for k, m in model.named_modules() if isinstance(m, MaskAttention))
    assert placed == (["bottleneck.attn"] if levels == 1 else ["bottleneck.attn", "decoder.2.attn"])


@pytest.mark.parametrize("levels, decoder", [(None, [0, 1, 2]), (3, [1, 2]), (1, [])])
def test_attn_levels_choose_the_coarsest_levels(levels, decoder):
    model = create_model("cbam", **SALT, width=4, depth=3, attn_levels=levels)
    placed = sorted(k for k, m in model.named_modules() if k.endswith(".attn") and not isinstance(m, nn.Identity))
    assert placed == ["bottleneck.attn"] + [f"decoder.{i}.attn" for i in decoder]


def test_unet_attention_points_and_gates_are_configurable():
    model = UNet(**SALT, width=4, attn="se", attn_points=("decoder",), gates=True)
    kinds = {k: type(m).__name__ for k, m in model.named_modules() if k.endswith((".attn", ".gate"))}
    assert kinds["encoder.0.attn"] == "Identity" and kinds["bottleneck.attn"] == "Identity"
    assert kinds["decoder.0.attn"] == "SqueezeExcite" and kinds["decoder.0.gate"] == "AttentionGate"
    with pytest.raises(ValueError, match="attn_points"):
        UNet(**SALT, attn_points=("stem",))


@pytest.mark.parametrize("nt, nz, strides", [(320, 64, [4]), (1000, 70, [4, 2]), (200, 64, [2]), (100, 64, [1])])
def test_time_stem_halves_time_down_to_no_fewer_than_nz_samples(nt, nz, strides):
    """floor(log2(nt / nz)) halvings, the first conv taking up to two; then resampling to nz."""
    model = create_model("none", in_shots=3, nt=nt, n_receivers=8, nz=nz, nx=8, width=4)
    convs = [m for m in model.stem.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == strides
    t = nt
    for c in convs:
        t = (t + 2 * c.padding[0] - c.kernel_size[0]) // c.stride[0] + 1
    assert nz <= t < 2 * nz or strides == [1]
    assert model.stem(torch.randn(2, 3, nt, 8)).shape == (2, 4, nz, 8)


def test_unet_rejects_wrong_input_shape():
    model = create_model("none", **SALT, width=4)
    with pytest.raises(ValueError, match="expects gathers"):
        model(torch.randn(1, 5, 64, 31))


def test_registry_errors():
    with pytest.raises(ValueError) as err:
        create_model("transformer", **SALT)
    for name in NAMES:
        assert name in str(err.value)
    with pytest.raises(TypeError, match="widht"):
        create_model("none", **SALT, widht=8)
    with pytest.raises(ValueError, match="fixes attn"):
        create_model("se", **SALT, attn="cbam")


def test_shared_hyper_parameters_go_to_the_models_that_take_them():
    unet = create_model("se", **SALT, width=4, depth=2, width_mult=0.125)
    assert unet.config["depth"] == 2 and "width_mult" not in unet.config
    net = create_model("inversionnet", **SALT, width=4, depth=2, width_mult=0.125)
    assert net.config["width_mult"] == 0.125 and "depth" not in net.config


# --- InversionNet is OpenFWI's at OpenFWI's size ----------------------------------------------

def test_inversionnet_matches_openfwi_layer_sizes():
    with torch.device("meta"):
        net = InversionNet()  # defaults: OpenFWI's 5 x 1000 x 70 -> 70 x 70
    state = net.state_dict()
    assert state["convblock1.layers.0.weight"].shape == (32, 5, 7, 1)
    assert state["convblock8.layers.0.weight"].shape == (512, 256, 8, 9)
    assert state["deconv1_1.layers.0.weight"].shape == (512, 512, 5, 5)
    assert state["deconv6.layers.0.weight"].shape == (1, 32, 3, 3)
    assert isinstance(net.pool, nn.Identity) and net.crop == (5, 5)
    assert count_params(net) == 24_409_123  # OpenFWI reports 24.4M
    sizes = {}
    hooks = [getattr(net, n).register_forward_hook(lambda m, i, o, n=n: sizes.__setitem__(n, tuple(o.shape)))
             for n in ("convblock4_2", "convblock7_2", "convblock8", "deconv1_1", "deconv5_2")]
    net(torch.zeros(2, 5, 1000, 70, device="meta"))
    for h in hooks:
        h.remove()
    assert sizes == {"convblock4_2": (2, 128, 63, 70), "convblock7_2": (2, 256, 8, 9),
                     "convblock8": (2, 512, 1, 1), "deconv1_1": (2, 512, 5, 5), "deconv5_2": (2, 32, 80, 80)}


def test_inversionnet_pools_long_records_to_openfwis_code_kernel():
    with torch.device("meta"):
        net = InversionNet(in_shots=5, nt=2000, n_receivers=301, nz=100, nx=300, width_mult=0.25)
        y = net.eval()(torch.zeros(1, 5, 2000, 301))
    assert net.convblock8.layers[0].kernel_size == (8, 9)
    assert y.shape == (1, 1, 100, 300)


# --- checkpoints ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, tmp_path):
    model = create_model(name, **SALT, **SMALL).train()
    model(gathers(SALT, 2))  # move BatchNorm statistics away from their initial values
    model.eval()
    path = save_checkpoint(tmp_path / "run" / "model.pt", model, epoch=3, metrics={"mae": 0.1})
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    loaded, extra = load_model(path)
    assert type(loaded) is type(model) and loaded.variant == name and loaded.config == model.config
    assert extra == {"epoch": 3, "metrics": {"mae": 0.1}}
    x = gathers(SALT, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_checkpoint_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model(missing)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pt"):
        load_model(corrupt)
    torch.save({"state_dict": {}}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="needs keys"):
        load_model(tmp_path / "partial.pt")


def test_checkpoint_with_mismatched_weights_names_variant_and_shapes(tmp_path):
    model = create_model("se", **SALT, width=4)
    path = save_checkpoint(tmp_path / "model.pt", model)
    ckpt = torch.load(path, weights_only=True)
    ckpt["kwargs"]["width"] = 8  # the weights no longer fit the rebuilt model
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    message = str(err.value)
    assert "model.pt" in message and "'se'" in message and "(4, 29, 7, 1)" in message


def test_save_checkpoint_needs_a_registered_model(tmp_path):
    with pytest.raises(ValueError, match="create_model"):
        save_checkpoint(tmp_path / "x.pt", nn.Linear(2, 2))
    with pytest.raises(ValueError, match="overwrite"):
        save_checkpoint(tmp_path / "x.pt", create_model("none", **SALT, width=4), state_dict={})


# --- costs ------------------------------------------------------------------------------------

def test_count_macs_counts_convolutions_exactly():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (2, 3, 10, 12)) == 2 * 8 * 3 * 9 * 10 * 12
    assert conv.training  # mode restored


def test_count_macs_counts_attention_matmuls():
    c, h, w = 16, 4, 5
    n = h * w
    block = MaskAttention(c, num_heads=4, mlp_ratio=4.0)
    expected = n * (c * 1 + 3 * c * c + 2 * n * c + c * c + 2 * 4 * c * c)  # head, qkv, QK^T+AV, proj, FFN
    assert count_macs(block, (1, c, h, w)) == expected
    with torch.device("meta"):
        meta_block = MaskAttention(c, num_heads=4)
    assert count_macs(meta_block, (1, c, h, w)) == expected


def test_variant_costs_are_ordered_sensibly():
    with torch.device("meta"):
        models = {n: create_model(n, **OPENFWI_SHAPE) for n in NAMES}
    sample = (1, 5, 1000, 70)
    macs = {n: count_macs(m, sample) for n, m in models.items()}
    assert macs["mask"] > macs["none"] and macs["inversionnet"] > macs["none"]
    assert macs["m2f"] > macs["none"] and macs["mixformer"] > 0 and macs["mask_hard"] == macs["mask"]
    assert count_params(models["se"]) > count_params(models["none"])


def test_command_variants_prints_every_variant(capsys):
    from fwi_attn.cli.learn import command_variants

    parser = argparse.ArgumentParser()
    run = command_variants(parser)
    assert run(parser.parse_args([])) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "variant" not in line]
    assert [r.split("|")[1].strip() for r in rows] == NAMES
    assert "1000" in out and math.isfinite(float(rows[0].split("|")[3].split()[0]))


# --- salt heads, m2f and mixformer ------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_salt_logits_one_per_level_on_the_velocity_grid(name):
    """``salt=True`` returns the salt heads' logits, coarse to fine, one per decoder stage (the UNets:
    bottleneck and every level; mixformer: its stages at levels 1..depth); only m2f and its control
    none_salt have them by default."""
    x = gathers(SALT, 2)
    plain = create_model(name, **SALT, **SMALL, depth=2).eval()
    with torch.no_grad():
        y, salt = plain(x, salt=True)
        torch.testing.assert_close(y, plain(x), rtol=0, atol=0)
    assert len(salt) == (3 if name in ("m2f", "none_salt") else 0)
    if name == "inversionnet":
        return
    headed = create_model(name, **SALT, **SMALL, depth=2, salt_heads=True).eval()
    assert headed.config["salt_heads"]
    with torch.no_grad():
        _, salt = headed(x, salt=True)
    assert len(salt) == (2 if name == "mixformer" else 3)
    assert all(s.shape == (2, 1, SALT["nz"], SALT["nx"]) for s in salt)


def test_m2f_places_masked_attention_at_decoder_levels_with_a_coarser_head():
    model = create_model("m2f", **SALT, width=4, depth=3, attn_levels=3)
    placed = sorted(k for k, m in model.named_modules() if isinstance(m, MaskedQueryAttention))
    assert placed == ["decoder.1.guide", "decoder.2.guide"]  # the bottleneck has no coarser prediction
    assert model.needs_salt_supervision and len(model.salt_heads) == 4
    with pytest.raises(ValueError, match="fixes salt_heads"):
        create_model("m2f", **SALT, width=4, salt_heads=False)


def _forced_salt(model, level: int, logits_fn):
    """Replace the salt head of ``level`` by ``logits_fn(shape)`` (a forward hook's output)."""
    return model.salt_heads[level].register_forward_hook(lambda m, i, out: logits_fn(out.shape))


def test_m2f_next_level_mask_follows_the_coarser_salt_prediction():
    torch.manual_seed(0)
    # Train mode: BatchNorm normalises the features by the batch, as in training; an untrained
    # model's eval-mode features are ~20x smaller and the positions would dominate its keys.
    model = create_model("m2f", **SALT, width=4, depth=3, salt_band=0).train()
    x = gathers(SALT, 2)

    def box(z0, z1, x0, x1):
        def make(shape):
            logits = torch.full(shape, -6.0)
            logits[..., z0:z1, x0:x1] = 6.0
            return logits
        return make

    masks, outputs = [], []
    for region in (box(2, 6, 3, 8), box(8, 12, 10, 16)):
        handle = _forced_salt(model, 3, region)  # the bottleneck's head guides decoder level 2
        with torch.no_grad(), capture_attention(model) as maps:
            outputs.append(model(x))
        handle.remove()
        masks.append(maps["decoder.2.guide"])
    hp, wp = masks[0].shape[-2:]
    expected = salt_attention_mask(box(2, 6, 3, 8)((2, 1, hp // 2, wp // 2)), (hp, wp), band=0)
    torch.testing.assert_close(masks[0], expected.float())
    assert 0 < masks[0].sum() < masks[0].numel()
    assert not torch.equal(masks[0], masks[1])
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3


def test_m2f_empty_predicted_mask_attends_everywhere():
    torch.manual_seed(0)
    model = create_model("m2f", **SALT, width=4, depth=3).eval()
    x = gathers(SALT, 1)
    handles = [_forced_salt(model, level, lambda shape: torch.full(shape, -6.0)) for level in range(4)]
    with torch.no_grad(), capture_attention(model) as maps:
        empty = model(x)
    for h in handles:
        h.remove()
    guided = [k for k in maps if k.endswith(".guide")]
    assert guided and all(maps[k].eq(1).all() for k in guided)
    handles = [_forced_salt(model, level, lambda shape: torch.full(shape, 6.0)) for level in range(4)]
    with torch.no_grad():
        everywhere = model(x)
    for h in handles:
        h.remove()
    torch.testing.assert_close(empty, everywhere, rtol=0, atol=0)


def test_mixformer_later_stage_attention_follows_earlier_stage_output():
    """Stage order is level 3 (bottleneck), 2, 1; perturbing stage 3's output moves the later stages' maps."""
    torch.manual_seed(0)
    model = create_model("mixformer", **SALT, width=4, depth=3, mix_pool=4).eval()
    x = gathers(SALT, 1)
    with torch.no_grad(), capture_attention(model) as maps:
        model(x)
    reference = {k: v.clone() for k, v in maps.items()}
    assert sorted(reference) == ["decoder.1", "decoder.2", "decoder.3"]  # no stage queries the full grid
    noise = torch.Generator().manual_seed(1)
    handle = model.decoder[3].register_forward_hook(
        lambda m, i, out: out + torch.randn(out.shape, generator=noise))
    with torch.no_grad(), capture_attention(model) as maps:
        model(x)
    handle.remove()
    torch.testing.assert_close(maps["decoder.3"], reference["decoder.3"], rtol=0, atol=0)  # its own map: unchanged
    for later in ("decoder.2", "decoder.1"):
        assert not torch.allclose(maps[later], reference[later], atol=1e-4), later


def test_mixformer_stages_mix_every_level_along_channels_with_a_mix_ffn():
    """As the official head: each stage's queries keep their level's width, its keys and values
    are the depth + 1 levels concatenated along channels on one pooled grid, its FFN is a Mix-FFN."""
    from fwi_attn.nn.layers.mix import MixAttention, MixFFN

    torch.manual_seed(0)
    width, depth = 4, 3
    model = create_model("mixformer", **SALT, width=width, depth=depth, mix_pool=4)
    chans = [width * 2**i for i in range(depth + 1)]
    stages = [model.decoder[level] for level in range(1, depth + 1)]
    assert all(isinstance(s, MixAttention) for s in stages)
    for level, stage in zip(range(1, depth + 1), stages):
        assert stage.source_dims == tuple(chans)
        assert stage.attn.q.in_features == chans[level] and stage.attn.k.in_features == sum(chans)
        assert isinstance(stage.ffn, MixFFN) and stage.ffn.dwconv.groups == stage.ffn.dwconv.in_channels
    seen = {}
    hooks = [s.register_forward_hook(lambda m, i, out, s=s: seen.__setitem__(s, m.mix(i[1])[0].shape))
             for s in stages]
    with torch.no_grad():
        model.eval()(gathers(SALT, 1))
    for h in hooks:
        h.remove()
    assert all(seen[s] == (1, 16, sum(chans)) for s in stages)  # one 4 x 4 grid, every level's channels


def test_mixformer_pool_sets_the_key_value_size():
    small, large = (create_model("mixformer", **SALT, width=4, depth=2, mix_pool=p) for p in (2, 8))
    assert count_params(small) == count_params(large)  # pooling has no parameters
    sample = (1, SALT["in_shots"], SALT["nt"], SALT["n_receivers"])
    assert count_macs(small, sample) < count_macs(large, sample)
