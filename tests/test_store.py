"""HDF5 shards: schema round-trip, validation errors that name the file, atomic writes, CLI."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from fwi_attn.cli import main
from fwi_attn.data.velocity_files import save_segy
from fwi_attn.io.files import atomic_path
from fwi_attn.io.hdf5 import ChecksumError, ShardError, seal
from fwi_attn.io.predictions import read_predictions, write_predictions
from fwi_attn.io.shard import SCHEMA, read_shard, validate_shard, write_shard


def make_arrays(n=3, shots=2, nt=10, rec=4, nz=5, nx=6):
    rng = np.random.default_rng(0)
    velocity = rng.uniform(1500, 4500, (n, nz, nx)).astype(np.float32)
    gathers = rng.standard_normal((n, shots, nt, rec)).astype(np.float32)
    src = np.stack([np.linspace(0, 50, shots), np.full(shots, 10.0)], 1)
    rcv = np.stack([np.linspace(0, 50, rec), np.full(rec, 10.0)], 1)
    attrs = dict(dx=10.0, dt=0.002, nt=nt, freq=12.0, seed=3, config={"a": 1}, dataset="d", split="test")
    return velocity, gathers, src, rcv, attrs


def test_round_trip(tmp_path):
    v, g, s, r, attrs = make_arrays()
    write_shard(tmp_path / "s.h5", v, g, s, r, attrs)
    shard = validate_shard(tmp_path / "s.h5")
    np.testing.assert_array_equal(shard.velocity, v)
    np.testing.assert_array_equal(shard.gathers, g)
    np.testing.assert_array_equal(shard.source_xz, s)
    assert shard.attrs["schema"] == SCHEMA and shard.config == {"a": 1}
    assert (shard.n, shard.n_shots, shard.nt, shard.n_receivers, shard.nz, shard.nx) == (3, 2, 10, 4, 5, 6)
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["gathers"].chunks == (1, 2, 10, 4)  # one sample per chunk for the loader


def test_write_refuses_mismatched_shapes(tmp_path):
    v, g, s, r, attrs = make_arrays()
    with pytest.raises(ShardError, match="do not match 3 velocity models"):
        write_shard(tmp_path / "s.h5", v, g[:2], s, r, attrs)
    with pytest.raises(ShardError, match="sources"):
        write_shard(tmp_path / "s.h5", v, g, s[:1], r, attrs)
    assert list(tmp_path.iterdir()) == []


def test_truncated_and_foreign_files_are_rejected_by_name(tmp_path):
    v, g, s, r, attrs = make_arrays(n=8, nt=200)
    good = tmp_path / "good.h5"
    write_shard(good, v, g, s, r, attrs)
    truncated = tmp_path / "truncated.h5"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ShardError, match="truncated.h5"):
        validate_shard(truncated)
    foreign = tmp_path / "foreign.h5"
    shutil.copy(good, foreign)
    with h5py.File(foreign, "a") as f:
        f.attrs["schema"] = "openfwi/0"
    with pytest.raises(ShardError, match=r"foreign.h5: schema 'openfwi/0', expected 'fwi-attn/1'"):
        read_shard(foreign)
    with pytest.raises(ShardError, match="no such shard"):
        read_shard(tmp_path / "absent.h5")
    nan = tmp_path / "nan.h5"
    shutil.copy(good, nan)
    with h5py.File(nan, "a") as f:
        f["gathers"][5, 0, 0, 0] = np.nan
        seal(f, {name: f[name][()] for name in f})  # as if written so: the checksum matches the NaN
    with pytest.raises(ShardError, match=r"nan.h5: gathers has NaN/inf values in samples \[5\]"):
        validate_shard(nan)


def test_interrupted_write_leaves_nothing(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []

    v, g, s, r, attrs = make_arrays()
    # A failure half-way through writing attributes must not leave the shard behind.
    with pytest.raises(TypeError):
        write_shard(target, v, g, s, r, {**attrs, "bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_cli_generate_info_preview(tiny_config, tmp_path, capsys):
    cfg_path = tmp_path / "tiny.yaml"
    import yaml

    cfg_path.write_text(yaml.safe_dump(tiny_config.to_dict()))
    out = tmp_path / "shard.h5"
    assert main(["generate", "-c", str(cfg_path), "--dataset", "salt", "--split", "val", "--shard", "0",
                 "--out", str(out), "--quiet"]) == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "valid:      yes" in text and "salt / val / shard 0" in text
    assert main(["preview", str(out), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    out.write_bytes(out.read_bytes()[:1000])
    assert main(["info", str(out)]) == 1
    assert "shard.h5" in capsys.readouterr().err


def test_cli_simulate_user_models(tiny_config, tmp_path):
    import yaml

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config.to_dict()))
    model = np.linspace(1600, 3500, 40)[:, None] * np.ones((40, 50))
    np.save(tmp_path / "m.npy", model.astype(np.float32))
    save_segy(tmp_path / "m.sgy", model.astype(np.float32), 10.0)
    for name in ("m.npy", "m.sgy"):
        out = tmp_path / f"{name}.h5"
        assert main(["simulate", str(tmp_path / name), "-c", str(cfg_path), "--out", str(out)]) == 0
        shard = validate_shard(out)
        assert shard.velocity.shape == (1, 24, 32) and shard.gathers.shape == (1, 3, 200, 16)
    np.testing.assert_allclose(read_shard(tmp_path / "m.npy.h5").gathers, read_shard(tmp_path / "m.sgy.h5").gathers,
                               rtol=1e-5, atol=1e-6)
    too_fast = model.copy()
    too_fast[10, 10] = 9000.0
    np.save(tmp_path / "fast.npy", too_fast.astype(np.float32))
    assert main(["simulate", str(tmp_path / "fast.npy"), "-c", str(cfg_path), "--out", str(tmp_path / "f.h5")]) == 1
    assert not (tmp_path / "f.h5").exists()


def test_cli_check_config_reports_errors(tmp_path, capsys):
    assert main(["check-config", "-c", "default"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("survey: {dx: -3}\n")
    assert main(["check-config", "-c", str(bad)]) == 1
    assert "survey.dx" in capsys.readouterr().err


def test_check_output_refuses_before_any_work(tmp_path):
    from fwi_attn.io.files import OutputError, check_output

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputError, match="because .*afile is a file"):
        check_output(afile / "sub" / "shard.h5")
    with pytest.raises(OutputError, match="is an existing folder"):
        check_output(tmp_path)
    with pytest.raises(OutputError, match="is an existing file"):
        check_output(afile, folder=True)
    assert check_output(tmp_path / "new" / "deeper" / "x.h5") == tmp_path / "new" / "deeper" / "x.h5"
    assert not (tmp_path / "new").exists()  # checking creates nothing


def reseal(path) -> None:
    with h5py.File(path, "a") as f:
        seal(f, {name: f[name][()] for name in f})


@pytest.mark.parametrize("edit, what", [
    (lambda f: f.attrs.__setitem__("dt", 0.004), "metadata checksum mismatch"),
    (lambda f: f.attrs.__setitem__("config", '{"a": 2}'), "metadata checksum mismatch"),
    (lambda f: f["gathers"].__setitem__((1, 0, 3, 2), 7.0), "data checksum mismatch"),
    (lambda f: f["receiver_xz"].__setitem__((0, 0), 1.0), "data checksum mismatch"),
], ids=["dt", "config", "gathers", "receivers"])
def test_edited_shard_fails_its_checksum(tmp_path, capsys, edit, what):
    """An attribute that gives the data meaning (dt 0.002 -> 0.004) or a stored value edited after
    writing: `fwi-attn info`, read_shard and the dataset loader refuse the file in one line."""
    from fwi_attn.data.dataset import ShardDataset

    v, g, s, r, attrs = make_arrays()
    path = tmp_path / "s.h5"
    write_shard(path, v, g, s, r, attrs)
    assert main(["info", str(path)]) == 0
    capsys.readouterr()
    with h5py.File(path, "a") as f:
        edit(f)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and what in err and "regenerate it" in err, err
    with pytest.raises(ChecksumError, match=what):
        validate_shard(path)
    if what.startswith("metadata"):
        with pytest.raises(ChecksumError, match=what):
            read_shard(path, load=False)  # every open: the cheap check
    else:
        ds = ShardDataset([path], check_finite=False)  # opening checks the metadata only ...
        with pytest.raises(ChecksumError, match=what):
            ds[0]  # ... the first read of the file in this process checks its data


def test_edited_predictions_fail_their_checksum(tmp_path):
    pred = np.full((2, 3, 4), 2000.0, np.float32)
    path = write_predictions(tmp_path / "p.h5", pred, pred + 1, np.arange(2), shards=["a.h5"], variant="none",
                             seed=0, dataset="d", split="test", checkpoint="m.pt")
    assert read_predictions(path).prediction.tolist() == pred.tolist()
    with h5py.File(path, "a") as f:
        f["prediction"][0, 0, 0] = 2500.0
    with pytest.raises(ChecksumError, match="p.h5: data checksum mismatch"):
        read_predictions(path)
    write_predictions(path, pred, pred + 1, np.arange(2), shards=["a.h5"], variant="none", seed=0, dataset="d",
                      split="test", checkpoint="m.pt")
    with h5py.File(path, "a") as f:
        f.attrs["variant"] = "se"
    with pytest.raises(ChecksumError, match="p.h5: metadata checksum mismatch"):
        read_predictions(path)


def test_a_shard_from_before_checksums_is_read_with_a_warning(tmp_path):
    v, g, s, r, attrs = make_arrays()
    path = tmp_path / "old.h5"
    write_shard(path, v, g, s, r, attrs)
    with h5py.File(path, "a") as f:
        del f.attrs["meta_sha256"], f.attrs["data_sha256"]
    with pytest.warns(UserWarning, match="old.h5: written before files carried checksums.*regenerate it"):
        shard = validate_shard(path)
    np.testing.assert_array_equal(shard.gathers, g)


# ----------------------------------------------------------------------------- the io layer's other files


def showcase(seed=0):
    from fwi_attn.io.gathers import Showcase

    rng = np.random.default_rng(seed)
    g = rng.normal(size=(2, 12, 5)).astype(np.float32)
    return Showcase(index=3, observed=g, predicted=g * 0.9, baseline=g * 0.5,
                    truth=rng.uniform(1500, 4500, (6, 7)), prediction=rng.uniform(1500, 4500, (6, 7)), dt=0.002,
                    dx=10.0, source_xz=rng.uniform(0, 60, (2, 2)), receiver_xz=rng.uniform(0, 60, (5, 2)),
                    attrs={"variant": "cbam", "seed": None, "dataset": "salt"})


def test_gathers_file_round_trips_and_refuses_an_edit(tmp_path):
    """gathers.h5 reads back what was written; an edited attribute is refused by its checksum."""
    from fwi_attn.io import gathers

    ours = tmp_path / "ours.h5"
    gathers.write_gathers(ours, showcase())
    back = gathers.read_gathers(ours)
    assert back.index == 3 and back.attrs["seed"] is None and back.attrs["variant"] == "cbam" and back.dx == 10.0
    np.testing.assert_array_equal(back.predicted, showcase().predicted)
    with h5py.File(ours, "r+") as f:
        f.attrs["dt"] = 0.004
    with pytest.raises(ChecksumError, match=r"ours\.h5: metadata checksum mismatch"):
        gathers.read_gathers(ours)


def test_a_run_json_result_is_checked_by_name(tmp_path):
    from fwi_attn.io.run_json import ResultError, read_metrics, read_physics, write_result
    from fwi_attn.layout import RUN

    path = tmp_path / RUN.metrics
    with pytest.raises(FileNotFoundError, match="fwi-attn evaluate"):
        read_metrics(path)
    record = {"variant": "none", "seed": 0, "dataset": "salt", "split": "test", "n_samples": 2,
              "mean": {"mae": 0.1}, "pooled": {"mae": 0.1}, "per_sample": {"mae": [0.1, 0.1]}, "settings": {}}
    write_result(path, record, RUN.metrics)
    assert read_metrics(path) == record
    with pytest.raises(ValueError, match="needs n_samples"):
        write_result(path, {k: v for k, v in record.items() if k != "n_samples"}, RUN.metrics)
    path.write_text(path.read_text().replace('"seed": 0', '"seed": 1'))
    with pytest.raises(ResultError, match="checksum mismatch.*fwi-attn evaluate"):
        read_metrics(path)
    (tmp_path / RUN.physics).write_text('{"variant": "none", "seed": 0, "dataset": "d", "n_samples": 1}')
    with pytest.raises(ResultError, match=r"missing indices, mean, per_sample .*fwi-attn physics"):
        read_physics(tmp_path / RUN.physics)
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ResultError, match=r"bad\.json: not a readable JSON result"):
        read_metrics(tmp_path / "bad.json")


def test_history_file_of_the_io_layer_is_trainings_file(tmp_path):
    from fwi_attn.io import history
    from fwi_attn.learn import train

    rows = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_mae": 0.1 * e + 1e-9, "val_ssim": 0.5, "lr": 1e-3,
             "seconds": 2.25} for e in range(3)]
    assert train.write_history is history.write_history  # training writes through the io layer
    history.write_history(tmp_path / "ours.csv", rows)
    assert history.read_history_rows(tmp_path / "ours.csv") == [{k: float(format(v, ".8g")) if k != "epoch" else v
                                                                 for k, v in r.items()} for r in rows]
    assert history.read_history(tmp_path / "ours.csv")["epoch"].tolist() == [0.0, 1.0, 2.0]
