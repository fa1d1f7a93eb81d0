"""The Predictor (a checkpoint with the normalisation it was trained with) and the files that
carry its results to the figures: attention.h5 from ``fwi-attn evaluate``.

Runs on the session's tiny dataset (24 x 32 cells, 3 shots, 16 receivers, 200 samples) with
small untrained networks built under a fixed seed.
"""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import refused_when_edited_read_when_legacy

from fwi_attn.cli import main
from fwi_attn.data.dataset import ShardDataset
from fwi_attn.data.normalize import Normalizer
from fwi_attn.io.attention import AttentionError, read_attention
from fwi_attn.io.files import write_json
from fwi_attn.io.hdf5 import seal
from fwi_attn.io.shard import read_shard
from fwi_attn.io.stats import load_stats
from fwi_attn.learn.evaluate import evaluate_checkpoint, showcase_index
from fwi_attn.learn.inference import InferenceError, Predictor
from fwi_attn.nn.layers import capture_attention
from fwi_attn.nn.models import create_model, load_model, save_checkpoint


def _checkpoint(path, tiny_dataset, variant: str = "cbam", normalization: bool = True, seed: int = 0, **hyper):
    """An untrained ``variant`` network (seeded) for the tiny data, saved as a training run saves it."""
    stats = load_stats(tiny_dataset["stats"])
    torch.manual_seed(seed)
    shape = ShardDataset(tiny_dataset["shards"]["test"]).model_shape()
    model = create_model(variant, **shape, width=4, depth=2, **hyper)
    extra = dict(variant=variant, seed=seed, dataset="salt")
    if normalization:
        extra["normalization"] = dict(Normalizer.from_stats(stats).to_dict(), transform=stats["gathers"]["transform"])
    return save_checkpoint(path, model, **extra)


@pytest.fixture(scope="module")
def test_shard(tiny_dataset):
    return read_shard(tiny_dataset["shards"]["test"][0])


def test_predictor_is_the_model_on_normalised_gathers_inverted(tiny_dataset, test_shard, tmp_path):
    ckpt = _checkpoint(tmp_path / "model.pt", tiny_dataset)
    predictor = Predictor.load(ckpt, device="cpu")
    model, _ = load_model(ckpt)
    norm = Normalizer.from_stats(load_stats(tiny_dataset["stats"]))
    assert predictor.normalizer == norm
    with torch.no_grad():
        y = model(torch.from_numpy(norm.gathers(test_shard.gathers)))
    direct = norm.velocity_inverse(y, clip=True)[:, 0].numpy()
    got = predictor.predict(test_shard.gathers, batch_size=len(test_shard.gathers))
    assert got.dtype == np.float32 and got.shape == (8, 24, 32)
    np.testing.assert_array_equal(got, direct)
    assert got.min() >= norm.vmin and got.max() <= norm.vmax
    # Other batch sizes and channels_last change only the convolutions' rounding.
    np.testing.assert_allclose(predictor.predict(test_shard.gathers, batch_size=3), direct, rtol=0, atol=1e-2)
    last = Predictor.load(ckpt, device="cpu", channels_last=True)
    np.testing.assert_allclose(last.predict(test_shard.gathers, batch_size=3), direct, rtol=0, atol=1e-2)
    # Timed batches give the same velocity (their speed is measured in benchmarks/, not here).
    batches = (test_shard.gathers[a:a + 8] for a in (0,))
    timed, _ = predictor.predict_batches(batches, 8, timed=True)
    np.testing.assert_array_equal(timed, direct)


def test_predictor_attention_is_a_direct_capture(tiny_dataset, test_shard, tmp_path):
    ckpt = _checkpoint(tmp_path / "model.pt", tiny_dataset)
    predictor = Predictor.load(ckpt, device="cpu")
    model, _ = load_model(ckpt)
    norm = Normalizer.from_stats(load_stats(tiny_dataset["stats"]))
    maps = predictor.attention(test_shard.gathers[[2, 5]])
    for k, got in zip((2, 5), maps):
        with torch.no_grad(), capture_attention(model) as want:
            model(torch.from_numpy(norm.gathers(test_shard.gathers[k]))[None])
        assert list(got) == list(want) and got  # cbam has spatial maps, in forward order
        for key in want:
            np.testing.assert_array_equal(got[key], want[key][0, 0].numpy())
    # A network without spatial attention has no maps.
    none = Predictor.load(_checkpoint(tmp_path / "none.pt", tiny_dataset, variant="none"), device="cpu")
    assert none.attention(test_shard.gathers[:1]) == [{}]


def test_predictor_refuses_stats_of_another_normalisation(tiny_dataset, tmp_path):
    ckpt = _checkpoint(tmp_path / "model.pt", tiny_dataset)
    Predictor.load(ckpt, tiny_dataset["stats"], device="cpu")  # its own stats: accepted
    other = load_stats(tiny_dataset["stats"])
    other["gathers"]["max"] *= 1.5
    write_json(tmp_path / "other.json", other)
    with pytest.raises(InferenceError, match=rf"other\.json .* is not the normalisation {ckpt} was trained with"):
        Predictor.load(ckpt, tmp_path / "other.json", device="cpu")
    # A checkpoint without a record needs a stats file, and then uses it.
    bare = _checkpoint(tmp_path / "bare.pt", tiny_dataset, normalization=False)
    with pytest.raises(InferenceError, match="holds no normalisation record: pass --stats"):
        Predictor.load(bare, device="cpu")
    assert Predictor.load(bare, tmp_path / "other.json", device="cpu").normalizer == Normalizer.from_stats(other)


def test_evaluate_checks_its_stats_against_the_checkpoint(tiny_dataset, tmp_path, capsys):
    cfg = tiny_dataset["config"]
    ckpt = _checkpoint(tmp_path / "model.pt", tiny_dataset)
    other = load_stats(tiny_dataset["stats"])
    other["velocity"]["vmax"] = 5000.0
    write_json(tmp_path / "other.json", other)
    with pytest.raises(InferenceError, match="is not the normalisation"):
        evaluate_checkpoint(cfg, ckpt, tmp_path / "eval", stats_path=tmp_path / "other.json", progress=False)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg.to_dict()))
    rc = main(["evaluate", "--config", str(config), "--checkpoint", str(ckpt), "--out", str(tmp_path / "eval"),
               "--stats", str(tmp_path / "other.json"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "other.json" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_evaluate_writes_the_showcase_attention(tiny_dataset, test_shard, tmp_path):
    cfg = tiny_dataset["config"]
    ckpt = _checkpoint(tmp_path / "model.pt", tiny_dataset)
    out = tmp_path / "eval"
    evaluate_checkpoint(cfg, ckpt, out, stats_path=tiny_dataset["stats"], progress=False)
    att = read_attention(out / "attention.h5")
    # The sample with the most salt, chosen from the test targets alone.
    target = ShardDataset(tiny_dataset["shards"]["test"]).velocities()
    salt = (target > cfg.evaluate.salt_threshold).mean(axis=(1, 2))
    k = int(np.argmax(salt))
    assert att.index == k == showcase_index(target, cfg.evaluate.salt_threshold) and salt[k] > 0
    np.testing.assert_array_equal(att.velocity, target[k])
    assert (att.attrs["variant"], att.attrs["seed"], att.attrs["split"]) == ("cbam", 0, "test")
    assert att.pad == tuple(getattr(load_model(ckpt)[0], "pad", (0, 0, 0, 0)))
    # The maps are those of a direct capture: the checkpoint on the CPU, inputs normalised with
    # the dataset's stats.json (evaluate runs channels_last, which only changes rounding).
    model, _ = load_model(ckpt)
    norm = Normalizer.from_stats(load_stats(tiny_dataset["stats"]))
    with torch.no_grad(), capture_attention(model) as want:
        model(torch.from_numpy(norm.gathers(test_shard.gathers[k]))[None])
    assert list(att.maps) == list(want) and att.maps
    for key, amap in want.items():
        np.testing.assert_allclose(att.maps[key], amap[0, 0].numpy(), rtol=1e-5, atol=1e-6)
    # A network without spatial maps still records the sample, with no maps.
    evaluate_checkpoint(cfg, _checkpoint(tmp_path / "none.pt", tiny_dataset, variant="none"), tmp_path / "none",
                        progress=False)
    empty = read_attention(tmp_path / "none" / "attention.h5")
    assert empty.maps == {} and empty.index == k


def test_attention_reader_names_the_file(tiny_dataset, tmp_path):
    missing = tmp_path / "nowhere" / "attention.h5"
    with pytest.raises(FileNotFoundError, match=rf"{missing}.*fwi-attn evaluate"):
        read_attention(missing)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f.attrs["schema"] = "something/1"
    with pytest.raises(AttentionError, match=r"foreign\.h5: schema 'something/1', expected 'fwi-attn-attention/1'"):
        read_attention(tmp_path / "foreign.h5")
    cfg = tiny_dataset["config"]
    evaluate_checkpoint(cfg, _checkpoint(tmp_path / "model.pt", tiny_dataset), tmp_path, progress=False)
    with h5py.File(tmp_path / "attention.h5", "r+") as f:
        f.attrs["names"] = json.dumps(list(json.loads(f.attrs["names"])) + ["decoder.9.attn"])
        _resealed(f)  # as if written so: the reader's own check, not the checksum, must refuse it
    with pytest.raises(AttentionError, match=r"attention\.h5: maps decoder\.9\.attn named but not stored"):
        read_attention(tmp_path / "attention.h5")


def _resealed(f: h5py.File) -> None:
    """An edited file's checksums made to match again (every dataset, by its path in the file)."""
    arrays: dict = {}
    f.visititems(lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    seal(f, arrays)


@pytest.mark.parametrize("edit", ["map", "index"])
def test_an_edited_attention_file_is_refused_and_one_without_checksums_read_with_a_warning(
        tiny_dataset, tmp_path, edit):
    """attention.h5 carries data and metadata checksums: an edited map value or index attribute is
    refused in one line naming the file and the command that rewrites it; a file written before
    checksums is read with the warning to regenerate it."""
    cfg = tiny_dataset["config"]
    evaluate_checkpoint(cfg, _checkpoint(tmp_path / "model.pt", tiny_dataset), tmp_path, progress=False)
    path = tmp_path / "attention.h5"
    legacy = tmp_path / "old" / "attention.h5"
    legacy.parent.mkdir()
    shutil.copy(path, legacy)
    want = read_attention(path)
    assert want.maps and "meta_sha256" not in want.attrs
    with h5py.File(path, "r+") as f:
        if edit == "map":
            key = f"maps/{next(iter(want.maps))}"
            f[key][0, 0] = f[key][0, 0] + 0.25
        else:
            f.attrs["index"] = want.index + 1
    kind = {"map": "data", "index": "metadata"}[edit]
    old = refused_when_edited_read_when_legacy(read_attention, path, legacy, kind, "fwi-attn evaluate")
    assert old.index == want.index and list(old.maps) == list(want.maps)


@pytest.mark.parametrize("variant, hyper, names", [
    ("m2f", {}, ["salt_heads.2", "decoder.1.guide", "salt_heads.1", "decoder.0.guide", "salt_heads.0"]),
    ("mixformer", {"salt_heads": True},
     ["decoder.2", "salt_heads.2", "decoder.1", "salt_heads.1"]),
])
def test_attention_file_holds_the_predicted_salt_and_the_attention_of_each_level(
        variant, hyper, names, tiny_dataset, test_shard, tmp_path):
    """attention.h5 of m2f: per decoder level the mask its cross-attention used and, per level, the
    salt head's predicted probability that the next finer mask is cut from; of mixformer: each
    stage's mix-attention map (and the salt heads' predictions when it has them). Each map on its
    level's padded grid, in [0, 1]; a salt map is sigmoid of that head's logits; the attention
    figure draws them all beside the true salt outline."""
    from fwi_attn.results.attention_plots import plot_attention_maps

    cfg = tiny_dataset["config"]
    ckpt = _checkpoint(tmp_path / "model.pt", tiny_dataset, variant=variant, **hyper)
    evaluate_checkpoint(cfg, ckpt, tmp_path / "eval", progress=False)
    att = read_attention(tmp_path / "eval" / "attention.h5")
    assert list(att.maps) == names
    left, right, top, bottom = att.pad
    hp, wp = 24 + top + bottom, 32 + left + right
    for key, amap in att.maps.items():
        level = int(key.split(".")[1])
        assert amap.shape == (hp // 2**level, wp // 2**level), key
        assert amap.dtype == np.float32 and 0 <= amap.min() and amap.max() <= 1, key
    if variant == "m2f":  # an untrained head predicts no salt: every mask attends everywhere
        assert all(np.all(att.maps[k] == 1) for k in names if k.endswith(".guide"))
    # The salt maps are the heads' probabilities on this sample, recomputed here from their logits.
    model, _ = load_model(ckpt)
    norm = Normalizer.from_stats(load_stats(tiny_dataset["stats"]))
    logits = {}
    hooks = [model.salt_heads[level].register_forward_hook(
        lambda m, i, out, level=level: logits.__setitem__(f"salt_heads.{level}", out))
        for level in range(3) if isinstance(model.salt_heads[level], torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.from_numpy(norm.gathers(test_shard.gathers[att.index]))[None])
    for h in hooks:
        h.remove()
    for key, z in logits.items():
        np.testing.assert_allclose(att.maps[key], torch.sigmoid(z)[0, 0].numpy(), rtol=1e-5, atol=1e-6)
    g = cfg.geology
    png = tmp_path / f"attention_{variant}.png"
    plot_attention_maps({variant: att.maps, "none": {}}, {variant: att.pad, "none": (0, 0, 0, 0)}, att.velocity,
                        png, cfg.survey.dx, g.vmin, g.vmax, cfg.evaluate.salt_threshold, att.index)
    assert png.stat().st_size > 0


def test_metrics_json_is_built_by_one_function_for_every_mode():
    """Labels, cost, scores, origin and settings in one order, whatever the mode fills in."""
    from types import SimpleNamespace

    from fwi_attn.data.normalize import VelocityScale
    from fwi_attn.learn.evaluate import metrics_record
    from fwi_attn.learn.metrics import METRICS

    cfg = SimpleNamespace(evaluate=SimpleNamespace(salt_threshold=4200.0, boundary_tolerance=1))
    rng = np.random.default_rng(7)
    target = rng.uniform(1500, 4500, (3, 12, 12)).astype(np.float32)
    labels = {"variant": "none", "seed": 0, "dataset": "salt", "split": "test", "n_samples": 3}
    record = metrics_record(cfg, VelocityScale(1500.0, 4500.0), target + 50, target, labels=labels,
                            cost={"n_params": 10, "macs": 20, "time_per_sample_s": 0.1},
                            origin={"checkpoint": None, "epoch": 4})
    assert list(record) == [*labels, "n_params", "macs", "time_per_sample_s", "mean", "pooled", "per_sample",
                            "clipped", "checkpoint", "epoch", "settings", "provenance"]
    assert record["settings"] == {"vmin": 1500.0, "vmax": 4500.0, "salt_threshold": 4200.0, "boundary_tolerance": 1}
    assert set(record["per_sample"]) == set(METRICS) and record["mean"]["mae_ms"] == pytest.approx(50.0, rel=1e-6)
    bare = metrics_record(cfg, VelocityScale(1500.0, 4500.0), target, target, labels=labels, cost={}, origin={})
    assert list(bare) == [*labels, "mean", "pooled", "per_sample", "clipped", "settings", "provenance"]
