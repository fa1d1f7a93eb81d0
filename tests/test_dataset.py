"""Tests for the data package: the shard loader (dataset), OpenFWI folders (sources), normalisation
(normalize) and stats (dataset.compute_stats, io.stats)."""
from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from fwi_attn.data.dataset import ShardDataset, compute_stats
from fwi_attn.data.normalize import Normalizer, VelocityScale, gain_log_transform, inverse_log_transform, log_transform
from fwi_attn.data.sources import find_sources
from fwi_attn.io.hdf5 import DATA_HASH, META_HASH, ShardError, seal
from fwi_attn.io.shard import DatasetError, read_shard, write_shard
from fwi_attn.io.stats import StatsError, load_stats, mean_velocity


@pytest.fixture(scope="module")
def stats(tiny_dataset):
    return load_stats(tiny_dataset["stats"])


def _copy_split(tiny_dataset, split, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for p in tiny_dataset["shards"][split]:
        shutil.copy(p, dst / p.name)
    return sorted(dst.glob("*.h5"))


# ----------------------------------------------------------------------------- loading


def test_loader_returns_the_shard_sample(tiny_dataset):
    paths = tiny_dataset["shards"]["train"]
    ds = ShardDataset(tiny_dataset["dir"] / "train")
    assert len(ds) == 16 and ds.paths == [str(p) for p in paths]
    assert ds.model_shape() == dict(in_shots=3, nt=200, n_receivers=16, nz=24, nx=32)
    for index, (shard, j) in [(0, (0, 0)), (11, (1, 3)), (15, (1, 7))]:
        x, y = ds[index]
        with h5py.File(paths[shard], "r") as f:
            np.testing.assert_array_equal(x.numpy(), f["gathers"][j])
            np.testing.assert_array_equal(y.numpy(), f["velocity"][j][None])
    assert x.dtype == torch.float32 and x.shape == (3, 200, 16) and y.shape == (1, 24, 32)
    np.testing.assert_array_equal(ds.velocities()[11], read_shard(paths[1]).velocity[3])


def test_loader_normalises(tiny_dataset, stats):
    norm = Normalizer.from_stats(stats)
    raw, ds = ShardDataset(tiny_dataset["dir"] / "train"), ShardDataset(tiny_dataset["dir"] / "train", norm)
    g, v = raw.read(5)
    x, y = ds[5]
    cfg = tiny_dataset["config"]
    nt = g.shape[-2]
    gain = cfg.normalize.gain_scale * (np.arange(1, nt + 1) / nt)[:, None] ** cfg.normalize.gain_power
    expected = np.sign(g) * np.log1p(gain * np.abs(g))
    expected = (expected - norm.gathers_min) / (norm.gathers_max - norm.gathers_min) * 2 - 1
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(y.numpy()[0], (v - 1500.0) / 3000.0 * 2 - 1, atol=1e-6)
    # The train split's extremes map exactly onto -1 and +1.
    allx = torch.stack([ds[i][0] for i in range(len(ds))])
    assert allx.min() == pytest.approx(-1.0, abs=1e-6) and allx.max() == pytest.approx(1.0, abs=1e-6)


def test_cached_samples_equal_the_uncached_ones(tiny_dataset, stats):
    """keep_in_memory() returns the same tensors, read and normalised once: later reads are the cached objects."""
    norm = Normalizer.from_stats(stats)
    plain = ShardDataset(tiny_dataset["dir"] / "train", norm)
    cached = ShardDataset(tiny_dataset["dir"] / "train", norm)
    cached.keep_in_memory()
    first = [cached[i] for i in range(len(cached))]
    for i, (x, y) in enumerate(first):
        torch.testing.assert_close(x, plain[i][0], rtol=0, atol=0)
        torch.testing.assert_close(y, plain[i][1], rtol=0, atol=0)
        assert cached[i][0] is x and cached[i][1] is y
    assert cached.nbytes() == 4 * 16 * (3 * 200 * 16 + 24 * 32)


def test_loader_in_worker_processes(tiny_dataset, stats):
    """Forked workers open their own handles after the parent has opened the files."""
    ds = ShardDataset(tiny_dataset["dir"] / "val", Normalizer.from_stats(stats))
    ds[0]  # the parent now holds open h5py handles
    serial = [b for b in torch.utils.data.DataLoader(ds, batch_size=3)]
    parallel = [b for b in torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)]
    for (xa, ya), (xb, yb) in zip(serial, parallel, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("layout", ["flat", "subfolders"])
def test_openfwi_npy_folder(tiny_dataset, tmp_path, layout):
    """OpenFWI's data<k>.npy [n, S, T, R] / model<k>.npy [n, 1, nz, nx] pairs load like shards."""
    shards = [read_shard(p) for p in tiny_dataset["shards"]["train"]]
    gdir, vdir = (tmp_path, tmp_path) if layout == "flat" else (tmp_path / "data", tmp_path / "model")
    gdir.mkdir(exist_ok=True), vdir.mkdir(exist_ok=True)
    for k, s in enumerate(shards, start=1):
        np.save(gdir / f"data{k}.npy", s.gathers)
        np.save(vdir / f"model{k}.npy", s.velocity[:, None])
    h5 = ShardDataset(tiny_dataset["dir"] / "train")
    npy = ShardDataset(tmp_path)
    assert [s.kind for s in npy.sources] == ["npy", "npy"] and len(npy) == len(h5)
    for i in (0, 9, 15):
        for a, b in zip(npy[i], h5[i]):
            assert torch.equal(a, b)
    np.testing.assert_array_equal(npy.velocities(), h5.velocities())
    cfg = tiny_dataset["config"]
    assert compute_stats(tmp_path, cfg.geology.vmin, cfg.geology.vmax, **cfg.normalize)["gathers"] == \
        compute_stats(tiny_dataset["dir"] / "train", cfg.geology.vmin, cfg.geology.vmax, **cfg.normalize)["gathers"]


def test_openfwi_npy_missing_partner(tmp_path):
    np.save(tmp_path / "data1.npy", np.zeros((2, 1, 12, 4), np.float32))
    with pytest.raises(DatasetError, match="model1.npy"):
        ShardDataset(tmp_path)


# ----------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("gain", [(0.0, 1.0), (2.0, 10.0)])
def test_normalisation_round_trips(gain):
    norm = Normalizer(gathers_min=-3.5, gathers_max=4.25, vmin=1500.0, vmax=4500.0, gain_power=gain[0],
                      gain_scale=gain[1])
    rng = np.random.default_rng(0)
    g = (rng.standard_normal((2, 3, 50, 7)) * 10).astype(np.float32)
    # float32 rounding is divided by the gain, ~1e-3 at the first samples: hence atol 1e-4.
    np.testing.assert_allclose(norm.gathers_inverse(norm.gathers(g)), g, rtol=1e-4, atol=1e-4)
    back = norm.gathers_inverse(torch.from_numpy(norm.gathers(g)).double())
    np.testing.assert_allclose(back.numpy(), g, rtol=1e-4, atol=1e-4)
    assert Normalizer.from_dict(norm.to_dict()) == norm
    v = rng.uniform(1500, 4500, (4, 6, 5))
    np.testing.assert_allclose(norm.velocity_inverse(norm.velocity(v)), v, rtol=1e-12)
    assert norm.velocity(np.array([1500.0, 3000.0, 4500.0])).tolist() == [-1.0, 0.0, 1.0]
    np.testing.assert_allclose(norm.velocity_inverse(np.array([-1.2, 1.3]), clip=True), [1500.0, 4500.0])
    t = torch.linspace(-30, 30, 101, dtype=torch.float64)
    torch.testing.assert_close(inverse_log_transform(log_transform(t)), t)
    np.testing.assert_allclose(log_transform(np.array([-np.e + 1, 0.0, np.e - 1])), [-1.0, 0.0, 1.0])
    with pytest.raises(StatsError, match="exceed"):
        Normalizer(1.0, 1.0, 1500.0, 4500.0)


def test_velocity_scale_is_the_normalisers_velocity_half_to_the_last_bit():
    norm = Normalizer(gathers_min=-3.5, gathers_max=4.25, vmin=1500.0, vmax=4500.0, gain_power=2.0, gain_scale=10.0)
    scale = VelocityScale(1500.0, 4500.0)
    assert norm.velocity_scale == scale == Normalizer.for_velocity(1500, 4500)
    v = np.random.default_rng(3).uniform(1400, 4600, (3, 8, 9))
    assert np.array_equal(scale.velocity(v), norm.velocity(v))
    assert np.array_equal(scale.unit_interval(scale.velocity(v)), Normalizer.unit_interval(norm.velocity(v)))
    for clip in (False, True):
        back = norm.velocity_inverse(norm.velocity(v), clip)
        assert np.array_equal(scale.velocity_inverse(scale.velocity(v), clip), back)
    t = torch.from_numpy(v)
    assert torch.equal(scale.velocity_inverse(t, clip=True), norm.velocity_inverse(t, clip=True))
    assert float(scale.velocity_inverse(t, clip=True).max()) == 4500.0
    with pytest.raises(StatsError, match="vmax .* must exceed vmin"):
        VelocityScale(4500.0, 1500.0)


def test_time_gain_balances_early_and_late_arrivals(tiny_dataset, stats):
    """Without the gain the direct wave dwarfs the late reflections in the network's input;
    the (t/T)^2 gain brings the late part of the record up to within a few times the early part."""
    g = ShardDataset(tiny_dataset["dir"] / "train").read(0)[0]
    quarter = g.shape[-2] // 4

    def early_late(y):
        return np.abs(y[..., :quarter, :]).mean() / np.abs(y[..., -quarter:, :]).mean()

    gained = Normalizer.from_stats(stats)
    plain = Normalizer(*(stats["gathers"][k] for k in ("min", "max")), 1500.0, 4500.0)
    assert gained.gain_power == 2.0 and gained.gain_scale == 10.0
    assert early_late(gain_log_transform(g, 2.0, 10.0)) < early_late(gain_log_transform(g, 0.0, 1.0)) / 3
    # A stats file without gain keys (written before the gain existed) means OpenFWI's transform.
    old = {**stats, "gathers": {k: v for k, v in stats["gathers"].items() if not k.startswith("gain_")}}
    assert Normalizer.from_stats(old) == plain


# ----------------------------------------------------------------------------- stats


def test_stats_values(tiny_dataset, stats):
    shards = [read_shard(p) for p in tiny_dataset["shards"]["train"]]
    g = np.concatenate([s.gathers for s in shards])
    v = np.concatenate([s.velocity for s in shards])
    assert stats["n_samples"] == 16 and stats["split"] == "train"
    assert stats["gathers"]["raw_min"] == pytest.approx(float(g.min()))
    nt = g.shape[-2]
    gained = np.sign(g) * np.log1p(10.0 * ((np.arange(1, nt + 1) / nt) ** 2)[:, None] * np.abs(g))
    assert stats["gathers"]["max"] == pytest.approx(float(gained.max()), rel=1e-5)
    assert stats["gathers"]["min"] == pytest.approx(float(gained.min()), rel=1e-5)
    assert (stats["gathers"]["gain_power"], stats["gathers"]["gain_scale"]) == (2.0, 10.0)
    np.testing.assert_allclose(mean_velocity(stats), v.mean(axis=0), atol=2e-3)
    assert (stats["velocity"]["vmin"], stats["velocity"]["vmax"]) == (1500.0, 4500.0)


def test_stats_ignore_val_and_test(tiny_dataset, tmp_path):
    """Changing the val and test splits leaves the stats unchanged."""
    cfg = tiny_dataset["config"]
    root = tmp_path / "salt"
    shutil.copytree(tiny_dataset["dir"], root, ignore=shutil.ignore_patterns("stats.json"))
    before = compute_stats(root / "train", cfg.geology.vmin, cfg.geology.vmax, **cfg.normalize)
    for split in ("val", "test"):
        for p in (root / split).glob("*.h5"):
            s = read_shard(p)
            write_shard(p, np.full_like(s.velocity, 4500.0), s.gathers * 100.0, s.source_xz, s.receiver_xz,
                        {k: s.attrs[k] for k in ("dx", "dt", "nt", "freq", "seed", "config")})
    after = compute_stats(root / "train", cfg.geology.vmin, cfg.geology.vmax, **cfg.normalize)
    assert json.dumps(before["gathers"]) == json.dumps(after["gathers"])
    assert before["mean_velocity"] == after["mean_velocity"]


def test_stats_command_and_missing_file(tiny_dataset, tmp_path, capsys):
    import yaml

    from fwi_attn.cli import main

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_dataset["config"].to_dict()))
    out = tmp_path / "stats.json"
    assert main(["stats", "--config", str(cfg_path), "--dataset", "salt", "--out", str(out)]) == 0
    assert load_stats(out)["n_samples"] == 16
    with pytest.raises(StatsError, match=r"does not exist: run `fwi-attn stats"):
        load_stats(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(StatsError, match="bad.json"):
        load_stats(tmp_path / "bad.json")
    # The file carries the sha256 of its content: an edited value is refused, naming the command
    # that remakes it; the same content without the field (as hand-made) is read as it is.
    raw = json.loads(out.read_text())
    assert "sha256" in raw and "sha256" not in load_stats(out)
    raw["gathers"]["max"] *= 1.5
    out.write_text(json.dumps(raw, indent=2))
    with pytest.raises(StatsError, match=r"stats\.json: checksum mismatch.*regenerate it with `fwi-attn stats") as e:
        load_stats(out)
    assert "\n" not in str(e.value)
    del raw["sha256"]
    out.write_text(json.dumps(raw))
    assert load_stats(out)["gathers"]["max"] == raw["gathers"]["max"]


# ----------------------------------------------------------------------------- errors


def test_garbage_shard_is_named(tiny_dataset, tmp_path):
    paths = _copy_split(tiny_dataset, "train", tmp_path)
    paths[1].write_bytes(b"this is not HDF5" * 1000)
    with pytest.raises(ShardError, match=str(paths[1])):
        ShardDataset(tmp_path)


def test_truncated_shard_is_named(tiny_dataset, tmp_path):
    paths = _copy_split(tiny_dataset, "train", tmp_path)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match=str(paths[0])):
        ds = ShardDataset(tmp_path)
        for i in range(len(ds)):
            ds[i]


def test_truncated_npy_is_named(tmp_path):
    np.save(tmp_path / "data1.npy", np.zeros((4, 1, 20, 3), np.float32))
    np.save(tmp_path / "model1.npy", np.zeros((4, 1, 5, 5), np.float32))
    raw = (tmp_path / "data1.npy").read_bytes()
    (tmp_path / "data1.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ShardError, match="data1.npy"):
        ShardDataset(tmp_path)


def test_nan_sample_is_named(tiny_dataset, tmp_path):
    paths = _copy_split(tiny_dataset, "train", tmp_path)
    with h5py.File(paths[1], "r+") as f:
        f["gathers"][3, 0, 10, 2] = np.nan
        seal(f, {n: f[n][()] for n in f})  # as if written so: the checksum would refuse an edited file first
    ds = ShardDataset(tmp_path)
    ds[10]  # a clean sample reads fine
    with pytest.raises(DatasetError, match=rf"{paths[1]}: sample 3 \(dataset index 11\) has NaN"):
        ds[11]
    with pytest.raises(DatasetError, match=rf"{paths[1]}: sample 3 has NaN"):
        compute_stats(tmp_path, 1500.0, 4500.0, gain_power=2.0, gain_scale=10.0)


def test_shape_mismatch_between_shards(tiny_dataset, tmp_path):
    paths = _copy_split(tiny_dataset, "train", tmp_path)
    s = read_shard(paths[1])
    write_shard(paths[1], s.velocity[:, :20], s.gathers, s.source_xz, s.receiver_xz,
                {k: s.attrs[k] for k in ("dx", "dt", "nt", "freq", "seed", "config")})
    with pytest.raises(DatasetError, match=rf"shape mismatch.*{paths[0]}.*{paths[1]}"):
        find_sources(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such data folder"):
        ShardDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no \\*.h5 shards"):
        ShardDataset(tmp_path)


def test_a_split_is_exactly_the_shards_the_config_defines(tiny_dataset, tmp_path):
    import shutil

    from fwi_attn.data.sources import split_sources

    cfg = tiny_dataset["config"]
    train = tiny_dataset["dir"] / "train"
    assert [s.gathers for s in split_sources(cfg, "train")] == tiny_dataset["shards"]["train"]
    # A shard left by a larger samples.train (or copied in) would silently enlarge the split.
    stale = train / "shard-0002.h5"
    shutil.copy(tiny_dataset["shards"]["train"][0], stale)
    try:
        with pytest.raises(DatasetError, match=r"1 file\(s\) not in the train split .*shard-0002.h5; remove them"):
            split_sources(cfg, "train")
    finally:
        stale.unlink()
    # A shard of another split copied under a train name is caught by what it records.
    kept = train / "keep.bak"
    shutil.move(tiny_dataset["shards"]["train"][1], kept)
    shutil.copy(tiny_dataset["shards"]["val"][0], tiny_dataset["shards"]["train"][1])
    try:
        with pytest.raises(DatasetError, match=r"shard-0001.h5 was not generated for this config's salt/train "
                                               r"split: split 'val' \(config: 'train'\)"):
            split_sources(cfg, "train")
    finally:
        shutil.move(kept, tiny_dataset["shards"]["train"][1])
    assert len(split_sources(cfg, "train")) == 2


def test_a_shard_recorded_before_derived_values_were_resolved_still_matches(tiny_dataset, tmp_path):
    import json
    import shutil

    import h5py

    from fwi_attn.data.sources import split_sources

    cfg = tiny_dataset["config"]
    path = tiny_dataset["shards"]["test"][0]
    backup = tmp_path / "backup.h5"
    shutil.copy(path, backup)
    try:
        with h5py.File(path, "r+") as f:
            recorded = json.loads(f.attrs["config"])
            recorded["survey"]["peak_time"] = None  # as written before the peak time was resolved
            f.attrs["config"] = json.dumps(recorded, sort_keys=True)
            for key in (DATA_HASH, META_HASH):  # and before shards carried checksums
                del f.attrs[key]
        assert [s.gathers for s in split_sources(cfg, "test")] == [path]
    finally:
        shutil.move(backup, path)
