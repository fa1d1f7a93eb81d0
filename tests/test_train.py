"""Tests for fwi_attn.learn.train and fwi_attn.learn.evaluate on the tiny generated dataset."""
from __future__ import annotations

import copy
import csv
import json

import h5py
import numpy as np
import pytest
import torch
import yaml

from fwi_attn.cli import main
from fwi_attn.config import load_config
from fwi_attn.data.dataset import ShardDataset
from fwi_attn.data.normalize import Normalizer
from fwi_attn.io.history import read_history as history_columns
from fwi_attn.io.stats import StatsError
from fwi_attn.layout import default_stats_path
from fwi_attn.learn.metrics import METRICS
from fwi_attn.learn.train import HISTORY_COLUMNS, TrainError, make_loader, make_loss, train, train_one_epoch


def read_history(path) -> list[dict]:
    """``history.csv`` rows as dicts of numbers, read by the package's one reader."""
    columns = history_columns(path)
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in zip(columns, values)}
            for values in zip(*columns.values())]


@pytest.fixture(scope="module")
def tiny(tiny_dataset):
    return tiny_dataset


def _config_file(cfg_dict: dict, path) -> str:
    path.write_text(yaml.safe_dump(cfg_dict))
    return str(path)


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_a_few_steps_lower_the_loss(tiny):
    from fwi_attn.io.stats import load_stats
    from fwi_attn.nn.models import create_model

    cfg = tiny["config"]
    stats = load_stats(default_stats_path(cfg))
    ds = ShardDataset(tiny["dir"] / "train", Normalizer.from_stats(stats))
    torch.manual_seed(0)
    model = create_model("none", **ds.model_shape(), width=4, depth=2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    loss_fn = make_loss("l1")
    loader = make_loader(ds, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    losses = [train_one_epoch(model, loader, opt, None, loss_fn, device=torch.device("cpu"), grad_clip=1.0)["loss"]
              for _ in range(4)]
    # Measured on the salt-province family: 0.480, 0.457, 0.441, 0.425.
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.93 * losses[0], losses


def test_losses():
    pred, target = torch.zeros(2, 1, 12, 12), torch.full((2, 1, 12, 12), 0.5)
    assert float(make_loss("l1")(pred, target)) == pytest.approx(0.5)
    assert float(make_loss("l2")(pred, target)) == pytest.approx(0.25)
    # Constant images: SSIM's structure term is 1, luminance (0.5 vs 0.75 on [0, 1]) below 1.
    l1_ssim = float(make_loss("l1_ssim", 0.5)(pred, target))
    assert 0.5 < l1_ssim < 1.0
    assert float(make_loss("l1_ssim", 0.5)(target, target)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(TrainError, match="valid: l1, l2, l1_l2, l1_ssim"):
        make_loss("huber")


def test_validation_uses_the_metrics_functions(tiny):
    """validate's MAE and SSIM are metrics.py's per-sample values averaged: the arithmetic it used
    to do itself (one float64 sum over every cell), and metrics.json's on the m/s route."""
    from fwi_attn.io.stats import load_stats
    from fwi_attn.learn.metrics import compute_metrics, ssim_torch
    from fwi_attn.learn.train import validate
    from fwi_attn.nn.models import create_model

    norm = Normalizer.from_stats(load_stats(default_stats_path(tiny["config"])))
    ds = ShardDataset(tiny["dir"] / "val", norm)
    torch.manual_seed(1)
    model = create_model("se", **ds.model_shape(), width=4, depth=2).eval()
    got = validate(model, make_loader(ds, len(ds), shuffle=False), device=torch.device("cpu"))
    x, y = (torch.stack(t) for t in zip(*(ds[i] for i in range(len(ds)))))
    with torch.no_grad():
        pred = model(x).float().clamp(-1.0, 1.0)
    assert got["mae"] == pytest.approx(float((pred - y).abs().sum(dtype=torch.float64)) / y.numel(), rel=1e-14)
    ssim = ssim_torch((pred + 1) / 2, (y + 1) / 2)
    assert got["ssim"] == float(ssim.sum(dtype=torch.float64)) / len(ds)
    ms = compute_metrics(norm.velocity_inverse(pred[:, 0].numpy()), ds.velocities(), norm.vmin, norm.vmax, 4200.0)
    assert got["mae"] == pytest.approx(ms["mae"].mean(), rel=1e-5)
    assert got["ssim"] == pytest.approx(ms["ssim"].mean(), rel=1e-4)


def test_resume_gives_the_same_weights(tiny, tmp_path):
    """Stopping after epoch 1 and resuming equals an uninterrupted run, bit for bit."""
    cfg = tiny["config"]
    full = train(cfg, "none", 3, tmp_path / "full", epochs=2, progress=False, log=lambda s: None)
    train(cfg, "none", 3, tmp_path / "again", epochs=2, progress=False, log=lambda s: None)
    part = train(cfg, "none", 3, tmp_path / "part", epochs=2, stop_after=1, progress=False, log=lambda s: None)
    assert full.finished and not part.finished and part.epochs_done == 1
    resumed = train(cfg, "none", 3, tmp_path / "part", epochs=2, resume=True, progress=False, log=lambda s: None)
    assert resumed.finished
    for name in ("last.pt", "model.pt"):
        a, b, c = (_weights(tmp_path / d / name) for d in ("full", "part", "again"))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs after resume"
            assert torch.equal(a[k], c[k]), f"{name}: {k} differs between two runs with one seed"
    ha, hb = read_history(tmp_path / "full" / "history.csv"), read_history(tmp_path / "part" / "history.csv")
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(ha) == drop(hb) and len(ha) == 2


def test_training_on_cached_samples_gives_the_same_weights(tiny, tmp_path):
    """train.cache_mb only moves where the normalised samples come from: the weights are bit-identical."""
    from fwi_attn.config import load_config

    cfg = tiny["config"]
    uncached = load_config({**cfg.to_dict(), "train": {**cfg.to_dict()["train"], "cache_mb": 0}})
    a = train(cfg, "none", 3, tmp_path / "cached", epochs=2, progress=False, log=lambda s: None)
    b = train(uncached, "none", 3, tmp_path / "uncached", epochs=2, progress=False, log=lambda s: None)
    assert a.finished and b.finished
    wa, wb = _weights(tmp_path / "cached" / "model.pt"), _weights(tmp_path / "uncached" / "model.pt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_another_variant_or_seed(tiny, tmp_path):
    cfg = tiny["config"]
    train(cfg, "none", 0, tmp_path, epochs=2, stop_after=1, progress=False, log=lambda s: None)
    with pytest.raises(TrainError, match=r"holds variant 'none', this run is 'se'"):
        train(cfg, "se", 0, tmp_path, epochs=2, resume=True, progress=False, log=lambda s: None)
    with pytest.raises(TrainError, match="seed 0, this run has seed 1"):
        train(cfg, "none", 1, tmp_path, epochs=2, resume=True, progress=False, log=lambda s: None)
    raw = copy.deepcopy(cfg.to_dict())
    raw["model"]["width"] = 6
    with pytest.raises(TrainError, match="grid or model section changed"):
        train(load_config(raw), "none", 0, tmp_path, epochs=2, resume=True, progress=False, log=lambda s: None)
    with pytest.raises(TrainError, match="unknown variant 'unet'"):
        train(cfg, "unet", 0, tmp_path, progress=False)


def test_missing_stats_is_a_clear_error(tiny, tmp_path, capsys):
    cfg_path = _config_file(tiny["config"].to_dict(), tmp_path / "tiny.yaml")
    missing = tmp_path / "nowhere" / "stats.json"
    with pytest.raises(StatsError, match="fwi-attn stats"):
        train(tiny["config"], "none", 0, tmp_path / "run", stats_path=missing, progress=False)
    rc = main(["train", "--config", cfg_path, "--variant", "none", "--seed", "0", "--out", str(tmp_path / "run"),
               "--stats", str(missing), "--quiet"])
    assert rc == 1
    assert f"normalisation file {missing} does not exist" in capsys.readouterr().err


def test_end_to_end_train_then_evaluate(tiny, tmp_path, capsys):
    cfg_path = _config_file(tiny["config"].to_dict(), tmp_path / "tiny.yaml")
    run = tmp_path / "none" / "seed0"
    assert main(["train", "--config", cfg_path, "--variant", "none", "--seed", "0", "--out", str(run),
                 "--epochs", "2", "--quiet"]) == 0
    for name in ("model.pt", "last.pt", "history.csv"):
        assert (run / name).is_file(), name
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == HISTORY_COLUMNS and [r[0] for r in rows[1:]] == ["1", "2"]

    assert main(["evaluate", "--config", cfg_path, "--checkpoint", str(run / "model.pt"), "--out", str(run),
                 "--quiet"]) == 0
    m = json.loads((run / "metrics.json").read_text())
    for key in ("variant", "seed", "dataset", "split", "n_samples", "n_params", "macs", "time_per_sample_s",
                "mean", "per_sample"):
        assert key in m, key
    assert (m["variant"], m["seed"], m["dataset"], m["split"], m["n_samples"]) == ("none", 0, "salt", "test", 8)
    assert m["n_params"] > 0 and m["macs"] > 0 and m["time_per_sample_s"] > 0
    assert set(m["mean"]) == set(METRICS) and all(len(m["per_sample"][k]) == 8 for k in METRICS)
    with h5py.File(run / "predictions.h5", "r") as f:
        assert f.attrs["schema"] == "fwi-attn-predictions/1"
        attrs = tuple(f.attrs[k] for k in ("variant", "seed", "dataset", "split"))
        assert attrs == ("none", 0, "salt", "test")
        assert json.loads(f.attrs["shards"]) == [str(p) for p in tiny["shards"]["test"]]
        assert f.attrs["checkpoint"] == str(run / "model.pt")
        pred, target = f["prediction"][()], f["target"][()]
        assert pred.shape == target.shape == (8, 24, 32) and f["index"][()].tolist() == list(range(8))
        assert pred.min() >= 1500.0 and pred.max() <= 4500.0
    np.testing.assert_array_equal(target, ShardDataset(tiny["dir"] / "test").velocities())
    assert np.mean(np.abs(pred - target)) == pytest.approx(m["mean"]["mae_ms"], rel=1e-5)
    with h5py.File(run / "attention.h5", "r") as f:  # "none" has no spatial attention: no maps
        assert f.attrs["schema"] == "fwi-attn-attention/1" and json.loads(f.attrs["names"]) == []

    base = tmp_path / "mean"
    assert main(["evaluate", "--config", cfg_path, "--baseline", "mean", "--out", str(base)]) == 0
    b = json.loads((base / "metrics.json").read_text())
    assert (b["variant"], b["seed"], b["n_params"], b["macs"]) == ("mean", None, 0, 0)
    assert set(b["mean"]) == set(METRICS)
    with h5py.File(base / "predictions.h5", "r") as f:
        assert f.attrs["variant"] == "mean" and f.attrs["seed"] == -1
        np.testing.assert_allclose(f["prediction"][0], f["prediction"][7])


def test_checkpoint_of_another_grid_is_refused(tiny, tmp_path):
    from fwi_attn.data.simulate import generate_shard
    from fwi_attn.layout import shard_path
    from fwi_attn.learn.evaluate import EvaluateError, evaluate_checkpoint

    cfg = tiny["config"]
    run = tmp_path / "run"
    train(cfg, "none", 0, run, epochs=1, progress=False, log=lambda s: None)
    # A config whose grid differs from the data and the checkpoint.
    raw = copy.deepcopy(cfg.to_dict())
    raw["survey"]["nz"] = 16
    other = load_config(raw)
    with pytest.raises(ValueError, match="not generated for this config.* survey.nz 24 \\(config 16\\)"):
        evaluate_checkpoint(other, run / "model.pt", tmp_path / "eval", progress=False)
    # Test data of that other grid: the checkpoint itself does not fit.
    raw["study"]["data_dir"] = str(tmp_path / "data")
    raw["datasets"]["salt"]["samples"]["test"] = 2
    other = load_config(raw)
    generate_shard(other, "salt", "test", 0, shard_path(other.study.data_dir, "salt", "test", 0))
    with pytest.raises(EvaluateError, match=rf"checkpoint {run / 'model.pt'} was built for .* grid 24x32, but "
                                            r".* grid 16x32"):
        evaluate_checkpoint(other, run / "model.pt", tmp_path / "eval", progress=False)



def test_resume_auto_continues_only_an_unfinished_compatible_run(tiny, tmp_path):
    cfg = tiny["config"]
    lines = []
    train(cfg, "none", 0, tmp_path, epochs=2, stop_after=1, progress=False, log=lines.append)
    # Another variant's folder: strict resume refuses, auto starts afresh and says why.
    auto = train(cfg, "se", 0, tmp_path / "other", epochs=2, resume="auto", progress=False, log=lines.append)
    assert auto.finished
    raw = copy.deepcopy(cfg.to_dict())
    raw["train"]["lr"] = 0.001
    lines.clear()
    fresh = train(load_config(raw), "none", 0, tmp_path, epochs=2, resume="auto", progress=False, log=lines.append)
    assert fresh.finished and any("not resuming" in s and "train settings changed" in s for s in lines)
    assert not any(s.startswith("resuming") for s in lines)
    # A finished run is not "continued" into doing nothing: it is retrained.
    lines.clear()
    again = train(load_config(raw), "none", 0, tmp_path, epochs=2, resume="auto", progress=False, log=lines.append)
    assert again.finished and any("finished run" in s for s in lines)


def test_epochs_and_stop_after_must_be_positive(tiny, tmp_path):
    cfg = tiny["config"]
    with pytest.raises(TrainError, match="epochs must be at least 1, got 0"):
        train(cfg, "none", 0, tmp_path, epochs=0, progress=False, log=lambda s: None)
    with pytest.raises(TrainError, match="stop_after must be at least 1"):
        train(cfg, "none", 0, tmp_path, stop_after=0, progress=False, log=lambda s: None)
    assert not (tmp_path / "model.pt").exists()


def test_patience_stops_on_a_plateau_and_the_run_counts_as_finished(tiny, tmp_path):
    # A learning rate too small to move the weights: the validation MAE stalls, and patience 1
    # ends the run at the first epoch without a new best. per_variant sets it for `none` only.
    raw = copy.deepcopy(tiny["config"].to_dict())
    raw["train"]["per_variant"] = {"none": {"patience": 1, "lr": 1e-12, "scheduler": "none"}}
    cfg = load_config(raw)
    result = train(cfg, "none", 0, tmp_path / "run", epochs=6, progress=False, log=lambda s: None)
    assert result.finished and result.epochs_done < 6
    assert result.epochs_done - result.best_epoch == 1
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert last["plateau"] is True
    again = train(cfg, "none", 0, tmp_path / "run", epochs=6, resume=True, progress=False, log=lambda s: None)
    assert again.finished and again.epochs_done == result.epochs_done  # nothing more to train


def test_per_variant_settings_are_checked_and_applied(tiny):
    from fwi_attn.config import ConfigError, train_settings

    raw = copy.deepcopy(tiny["config"].to_dict())
    raw["train"]["per_variant"] = {"inversionnet": {"lr": 0.0001, "loss": "l1_l2"}}
    cfg = load_config(raw)
    assert train_settings(cfg, "inversionnet").lr == 0.0001 and train_settings(cfg, "inversionnet").loss == "l1_l2"
    assert train_settings(cfg, "none").lr == cfg.train.lr and "per_variant" not in train_settings(cfg, "none")
    raw["train"]["per_variant"] = {"inversionnet": {"learning_rate": 0.1}}
    with pytest.raises(ConfigError, match=r"train.per_variant.inversionnet: learning_rate not train keys"):
        load_config(raw)
    raw["train"]["per_variant"] = {"inversionnet": {"loss": "huber"}}
    with pytest.raises(ConfigError, match="loss"):
        load_config(raw)


# --- salt deep supervision ---------------------------------------------------------------------


def test_salt_loss_equals_an_independent_binary_cross_entropy():
    """SaltAuxLoss = base + weight * mean over levels of BCE(logits, target > level), against the
    textbook formula on fixed arrays (numpy, float64)."""
    rng = np.random.default_rng(3)
    target = rng.uniform(-1, 1, (2, 1, 6, 5)).astype(np.float32)
    pred = rng.uniform(-1, 1, (2, 1, 6, 5)).astype(np.float32)
    logits = [rng.normal(0, 2, (2, 1, 6, 5)).astype(np.float32) for _ in range(3)]
    level, weight = 0.25, 0.4

    truth = (target > level).astype(np.float64)

    def bce(z):
        p = 1 / (1 + np.exp(-z.astype(np.float64)))
        return -np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p))

    expected = np.mean(np.abs(pred - target)) + weight * np.mean([bce(z) for z in logits])
    loss = make_loss("l1", salt_weight=weight, salt_level=level)
    assert loss.wants_salt
    got = loss((torch.from_numpy(pred), [torch.from_numpy(z) for z in logits]), torch.from_numpy(target))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # A model without salt heads returns no logits: the loss is the base loss alone.
    alone = loss((torch.from_numpy(pred), []), torch.from_numpy(target))
    assert float(alone) == pytest.approx(np.mean(np.abs(pred - target)), rel=1e-6)


def test_a_negative_or_unplaced_salt_weight_is_a_clear_error(tiny):
    from fwi_attn.config import ConfigError

    with pytest.raises(TrainError, match="salt loss weight must be >= 0, got -0.1"):
        make_loss("l1", salt_weight=-0.1, salt_level=0.0)
    with pytest.raises(TrainError, match="salt threshold"):
        make_loss("l1", salt_weight=0.1)
    for key, value in (("salt_aux_weight", -0.5), ("m2f_salt_weight", -0.5), ("m2f_salt_weight", 0)):
        raw = copy.deepcopy(tiny["config"].to_dict())
        raw["train"][key] = value
        with pytest.raises(ConfigError, match=key):
            load_config(raw)


def _salt_training(tiny, weight: float, variant: str = "none", steps: int = 2):
    """A model with salt heads after ``steps`` real optimiser steps on the tiny training split,
    with salt loss ``weight``; returns (model before, model after, salt-head grads of the last step)."""
    from fwi_attn.io.stats import load_stats
    from fwi_attn.nn.models import create_model

    cfg = tiny["config"]
    norm = Normalizer.from_stats(load_stats(default_stats_path(cfg)))
    ds = ShardDataset(tiny["dir"] / "train", norm)
    torch.manual_seed(5)
    model = create_model(variant, **ds.model_shape(), width=4, depth=2, salt_heads=True)
    before = copy.deepcopy(model)
    loss_fn = make_loss("l1", salt_weight=weight, salt_level=float(norm.velocity(cfg.evaluate.salt_threshold)))
    subset = torch.utils.data.Subset(ds, range(4 * steps))
    loader = torch.utils.data.DataLoader(subset, batch_size=4, shuffle=False)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train_one_epoch(model, loader, opt, None, loss_fn, device=torch.device("cpu"), grad_clip=1.0)
    grads = [p.grad for head in model.salt_heads for p in head.parameters()]
    return before, model, grads


def _heads_changed(before, after) -> list[bool]:
    return [any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
            for a, b in zip(before.salt_heads, after.salt_heads)]


def test_the_salt_loss_trains_the_salt_heads_and_without_it_they_are_unused(tiny):
    """Weight > 0: every level's head (bottleneck and each decoder level) gets a gradient and moves.
    Weight 0 (the plain loss, model(x)): the heads are computed but unused, no gradient, unchanged."""
    before, after, grads = _salt_training(tiny, 0.5)
    assert len(grads) == 2 * 3 and all(g is not None and float(g.abs().sum()) > 0 for g in grads)
    assert all(_heads_changed(before, after))

    before, after, grads = _salt_training(tiny, 0.0)
    assert all(g is None for g in grads)
    assert not any(_heads_changed(before, after))
    # The trunk trained all the same.
    assert not torch.equal(before.head.weight, after.head.weight)


def test_salt_aux_weight_trains_a_plain_unet_differently(tiny, tmp_path):
    """train.salt_aux_weight > 0 gives ``none`` salt heads (in the checkpoint) and its gradient
    reaches the shared trunk: other weights and another validation MAE than weight 0."""
    cfg = tiny["config"]
    raw = copy.deepcopy(cfg.to_dict())
    raw["train"]["salt_aux_weight"] = 1.0
    quiet = dict(epochs=1, progress=False, log=lambda s: None)
    plain = train(cfg, "none", 0, tmp_path / "plain", **quiet)
    salted = train(load_config(raw), "none", 0, tmp_path / "salted", **quiet)
    a, b = (torch.load(tmp_path / d / "model.pt", map_location="cpu", weights_only=True) for d in ("plain", "salted"))
    assert not a["kwargs"].get("salt_heads") and b["kwargs"]["salt_heads"]
    heads = [k for k in b["state_dict"] if k.startswith("salt_heads.")]
    assert heads and not any(k.startswith("salt_heads.") for k in a["state_dict"])
    shared = [k for k in a["state_dict"] if k in b["state_dict"] and a["state_dict"][k].is_floating_point()]
    assert any(not torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in shared)
    assert plain.best_val_mae != salted.best_val_mae


def test_m2f_uses_m2f_salt_weight_while_salt_aux_weight_is_zero(tiny):
    from fwi_attn.config import train_settings
    from fwi_attn.learn.train import salt_weight
    from fwi_attn.nn.models import create_model

    raw = copy.deepcopy(tiny["config"].to_dict())
    raw["train"].update(salt_aux_weight=0.0, m2f_salt_weight=0.3)
    cfg = load_config(raw)
    shape = dict(in_shots=3, nt=200, n_receivers=16, nz=24, nx=32, width=4, depth=2)
    m2f, none = create_model("m2f", **shape), create_model("none", **shape)
    assert salt_weight(train_settings(cfg, "m2f"), m2f) == 0.3
    assert salt_weight(train_settings(cfg, "none"), none) == 0.0
    raw["train"]["salt_aux_weight"] = 0.7  # one weight for every variant, m2f included
    cfg = load_config(raw)
    assert salt_weight(train_settings(cfg, "m2f"), m2f) == 0.7 == salt_weight(train_settings(cfg, "none"), none)


def test_m2f_training_moves_its_salt_heads_with_the_default_weights(tiny, tmp_path):
    """With salt_aux_weight 0, m2f's salt heads train on m2f_salt_weight: two values of it, one
    seed, give two sets of heads (the heads' only gradient is the salt loss's)."""
    cfg = tiny["config"]
    assert cfg.train.salt_aux_weight == 0 and cfg.train.m2f_salt_weight > 0
    quiet = dict(epochs=1, progress=False, log=lambda s: None)
    train(cfg, "m2f", 0, tmp_path / "default", **quiet)
    raw = copy.deepcopy(cfg.to_dict())
    raw["train"]["m2f_salt_weight"] = 2.0
    train(load_config(raw), "m2f", 0, tmp_path / "heavy", **quiet)
    from fwi_attn.nn.models import load_model

    (a, _), (b, _) = (load_model(tmp_path / d / "model.pt") for d in ("default", "heavy"))
    heads = lambda m: torch.cat([p.flatten() for p in m.salt_heads.parameters()])  # noqa: E731
    assert not torch.equal(heads(a), heads(b))
