"""Any velocity models as a scored test split: ``fwi-attn testset`` -> ``evaluate --test-set`` ->
metrics labelled with the set's name, and ``fwi-attn compare-sets`` between sets of models.

The model files (.npy, SEG-Y written with segyio, HDF5, MATLAB .mat) are made here from seeded
generators; the study is the session's tiny config (24 x 32 cells of 10 m, 3 shots, 16 receivers).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import yaml

from fwi_attn.cli import main
from fwi_attn.config import load_config
from fwi_attn.data.geology import generate_velocity
from fwi_attn.data.simulate import simulate
from fwi_attn.data.survey import Survey
from fwi_attn.data.testset import TestSetOptions, window_origins
from fwi_attn.data.velocity_files import save_segy
from fwi_attn.io.files import file_sha256
from fwi_attn.io.predictions import read_predictions
from fwi_attn.io.shard import read_shard


def config_file(cfg, tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return str(path)


def salt_models(cfg, n: int, nz: int, nx: int, seed: int) -> np.ndarray:
    """``n`` seeded salt models ``[n, nz, nx]`` (m/s) at the config's dx, within its velocity bounds."""
    return generate_velocity("salt", n, np.random.default_rng(seed), nz, nx, cfg.survey.dx, cfg.geology.to_dict())


@pytest.fixture(scope="module")
def model_folder(tiny_config, tmp_path_factory):
    """One folder with a model file of each format, on the tiny study's dx (10 m)."""
    cfg = tiny_config
    root = tmp_path_factory.mktemp("models")
    big = salt_models(cfg, 2, 48, 64, seed=3)  # 2 models x (2 rows x 2 columns) of 24 x 32 windows
    np.save(root / "a_stack.npy", big)
    section = salt_models(cfg, 1, 24, 64, seed=4)[0]  # one row of two windows
    save_segy(root / "b_section.sgy", section, cfg.survey.dx)
    with h5py.File(root / "c_model.h5", "w") as f:
        f["vp"] = salt_models(cfg, 1, 24, 32, seed=5)[0]  # exactly one window
        f["other"] = np.zeros((3, 3))
    scipy.io.savemat(root / "d_model.mat", {"vp": salt_models(cfg, 1, 30, 40, seed=6)[0]})  # one window
    return {"dir": root, "big": big, "section": section}


@pytest.fixture(scope="module")
def checkpoint(tiny_dataset, tmp_path_factory):
    from fwi_attn.learn.train import train

    out = tmp_path_factory.mktemp("run") / "none" / "seed0"
    train(tiny_dataset["config"], "none", 0, out, epochs=1, progress=False, log=lambda s: None)
    return out / "model.pt"


@pytest.fixture(scope="module")
def test_set(tiny_config, model_folder, tmp_path_factory):
    """The set 'mixed' made by the CLI from every file of ``model_folder``."""
    tmp = tmp_path_factory.mktemp("testset")
    out = tmp / "mixed"
    rc = main(["testset", str(model_folder["dir"]), "--config", config_file(tiny_config, tmp), "--name", "mixed",
               "--out", str(out), "--variable", "vp", "--shard-size", "5", "--device", "cpu", "--quiet"])
    assert rc == 0
    return out


def test_window_origins_cover_the_model_with_stride_and_top():
    assert window_origins((48, 64), 24, 32) == [(0, 0), (0, 32), (24, 0), (24, 32)]
    assert window_origins((48, 64), 24, 32, stride=(0, 16), top=4) == [(4, 0), (4, 16), (4, 32)]
    assert window_origins((48, 64), 24, 32, stride=(12, 32)) == [(0, 0), (0, 32), (12, 0), (12, 32), (24, 0),
                                                                  (24, 32)]
    assert window_origins((20, 64), 24, 32) == []


def test_testset_writes_shards_with_provenance(tiny_config, model_folder, test_set):
    cfg, root = tiny_config, model_folder["dir"]
    shards = sorted(test_set.glob("*.h5"))
    assert [p.name for p in shards] == ["shard-0000.h5", "shard-0001.h5", "shard-0002.h5"]  # 12 windows by 5
    velocity, prov, files = [], {"file": [], "model": [], "iz": [], "ix": []}, {}
    for i, path in enumerate(shards):
        shard = read_shard(path)
        assert (shard.attrs["dataset"], shard.attrs["split"], shard.attrs["shard"]) == ("mixed", "test", i)
        p = json.loads(shard.attrs["provenance"])
        assert p["set"] == "mixed" and p["options"]["variable"] == "vp"
        for k in ("model", "iz", "ix"):
            prov[k] += p[k]
        prov["file"] += [p["files"][k]["path"] for k in p["file"]]
        files.update({f["path"]: f for f in p["files"]})
        velocity.append(shard.velocity)
        # the gathers are the survey's simulation of the stored windows
        survey = Survey.from_config(cfg)
        np.testing.assert_array_equal(shard.gathers, simulate(shard.velocity, survey, device="cpu",
                                                              models_per_call=cfg.survey.models_per_call))
    velocity = np.concatenate(velocity)
    paths = [str((root / n).resolve()) for n in ("a_stack.npy", "b_section.sgy", "c_model.h5", "d_model.mat")]
    assert list(files) == paths
    assert [f["sha256"] for f in files.values()] == [file_sha256(p) for p in paths]
    assert [f["resample"] for f in files.values()] == [[1.0, 1.0]] * 4
    assert [f["shape"] for f in files.values()] == [[2, 48, 64], [1, 24, 64], [1, 24, 32], [1, 30, 40]]
    assert prov["file"] == [paths[0]] * 8 + [paths[1]] * 2 + paths[2:]
    assert prov["model"] == [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]
    assert list(zip(prov["iz"], prov["ix"]))[:4] == [(0, 0), (0, 32), (24, 0), (24, 32)]
    # every sample is exactly its window of its source model
    big, section = model_folder["big"], model_folder["section"]
    for i in range(8):
        m, iz, ix = prov["model"][i], prov["iz"][i], prov["ix"][i]
        np.testing.assert_array_equal(velocity[i], big[m, iz:iz + 24, ix:ix + 32])
    np.testing.assert_allclose(velocity[9], section[:, 32:64], rtol=1e-6)  # SEG-Y float32 round trip
    summary = json.loads((test_set / "testset.json").read_text())
    assert summary["name"] == "mixed" and summary["n_samples"] == 12 and summary["clipped_cells"] == 0


def test_evaluate_scores_checkpoint_and_baseline_on_the_named_set(tiny_dataset, checkpoint, test_set, tmp_path,
                                                                  capsys):
    cfg_path = config_file(tiny_dataset["config"], tmp_path)
    run = tmp_path / "testsets" / "mixed" / "none" / "seed0"
    rc = main(["evaluate", "--config", cfg_path, "--checkpoint", str(checkpoint), "--test-set", f"mixed={test_set}",
               "--out", str(run), "--stats", str(tiny_dataset["stats"]), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "on mixed/test, 12 samples" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["dataset"], metrics["split"], metrics["n_samples"]) == ("mixed", "test", 12)
    pred = read_predictions(run / "predictions.h5")
    assert (pred.attrs["dataset"], pred.attrs["split"]) == ("mixed", "test")
    assert [p.name for p in pred.shards] == ["shard-0000.h5", "shard-0001.h5", "shard-0002.h5"]
    np.testing.assert_array_equal(pred.target, np.concatenate([read_shard(p).velocity for p in pred.shards]))

    mean = tmp_path / "testsets" / "mixed" / "mean"
    rc = main(["evaluate", "--config", cfg_path, "--baseline", "mean", "--test-set", f"mixed={test_set}",
               "--out", str(mean), "--stats", str(tiny_dataset["stats"])])
    assert rc == 0, capsys.readouterr().err
    base = json.loads((mean / "metrics.json").read_text())
    assert (base["dataset"], base["split"], base["variant"], base["n_samples"]) == ("mixed", "test", "mean", 12)
    assert base["mean"]["mae_ms"] != metrics["mean"]["mae_ms"]

    # A predict output of the same set, scored against the true models it holds, gives the same numbers.
    rc = main(["predict", "--checkpoint", str(checkpoint), "--data", str(test_set), "--out",
               str(tmp_path / "pred.h5"), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    rc = main(["evaluate", "--config", cfg_path, "--predictions", str(tmp_path / "pred.h5"), "--out",
               str(tmp_path / "scored")])
    assert rc == 0, capsys.readouterr().err
    scored = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert (scored["dataset"], scored["split"], scored["variant"]) == ("mixed", "test", "none")
    for key in ("mae", "rmse", "ssim", "mae_ms"):
        assert scored["mean"][key] == pytest.approx(metrics["mean"][key], rel=1e-5)


def test_evaluate_refuses_a_set_under_another_name(tiny_dataset, checkpoint, test_set, tmp_path, capsys):
    rc = main(["evaluate", "--config", config_file(tiny_dataset["config"], tmp_path), "--checkpoint",
               str(checkpoint), "--test-set", f"other={test_set}", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 1 and "is not test set 'other'" in err and "dataset 'mixed'" in err and len(err.splitlines()) == 1
    rc = main(["evaluate", "--config", config_file(tiny_dataset["config"], tmp_path), "--checkpoint",
               str(checkpoint), "--test-set", str(test_set), "--out", str(tmp_path / "e")])
    assert rc == 1 and "--test-set takes NAME=FOLDER" in capsys.readouterr().err
    rc = main(["evaluate", "--config", config_file(tiny_dataset["config"], tmp_path), "--checkpoint",
               str(checkpoint), "--test-set", f"bp={test_set}", "--split", "val", "--out", str(tmp_path / "e")])
    assert rc == 1 and "it takes no --split val" in capsys.readouterr().err

    # A set simulated with another survey (same shapes, another wavelet) is not this study's test data.
    other = tiny_dataset["config"].to_dict()
    other["survey"]["freq"] = 10.0
    (tmp_path / "o").mkdir()
    np.save(tmp_path / "m.npy", salt_models(tiny_dataset["config"], 1, 24, 32, seed=1))
    assert main(["testset", str(tmp_path / "m.npy"), "--config", config_file(load_config(other), tmp_path / "o"),
                 "--name", "mixed", "--out", str(tmp_path / "freq10"), "--device", "cpu", "--quiet"]) == 0
    rc = main(["evaluate", "--config", config_file(tiny_dataset["config"], tmp_path), "--checkpoint",
               str(checkpoint), "--test-set", f"mixed={tmp_path / 'freq10'}", "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 1 and "survey.freq 10.0 (config 12.0)" in err and "shard-0000.h5" in err


def test_an_incomplete_set_is_refused_by_every_reader(tiny_dataset, checkpoint, test_set, tmp_path, capsys,
                                                      monkeypatch):
    """A set without its testset.json (written last) is refused by evaluate and compare-sets, naming
    what is missing and the command that completes it; a rebuild that stops half-way leaves none."""
    import shutil

    import fwi_attn.data.simulate

    config = config_file(tiny_dataset["config"], tmp_path)
    partial = tmp_path / "mixed"
    shutil.copytree(test_set, partial)
    (partial / "testset.json").unlink()
    for argv in (["evaluate", "--config", config, "--checkpoint", str(checkpoint), "--test-set", f"mixed={partial}",
                  "--out", str(tmp_path / "e"), "--quiet"],
                 ["evaluate", "--config", config, "--baseline", "mean", "--test-set", f"mixed={partial}",
                  "--out", str(tmp_path / "m"), "--stats", str(tiny_dataset["stats"])],
                 ["compare-sets", str(tiny_dataset["dir"] / "train"), str(partial), "--out", str(tmp_path / "c")]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert f"{partial}: test set incomplete: no testset.json" in err, err
        assert f"fwi-attn testset MODELS --config C --name mixed --out {partial} --overwrite" in err, err
    assert not (tmp_path / "e").exists() and not (tmp_path / "m" / "metrics.json").exists()
    assert not (tmp_path / "c" / "compare_sets.json").exists()

    # A summary that lists other shards than the folder holds is refused too.
    shutil.copy(test_set / "testset.json", partial / "testset.json")
    (partial / "shard-0001.h5").unlink()
    assert main(argv) == 1 and "missing shard-0001.h5" in capsys.readouterr().err
    # So is a summary edited after it was written (its sha256 left in place), naming the command.
    summary = json.loads((test_set / "testset.json").read_text())
    summary["shards"] = summary["shards"][:1]
    (partial / "testset.json").write_text(json.dumps(summary, indent=2))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "testset.json: checksum mismatch" in err, err
    assert f"regenerate it with `fwi-attn testset MODELS --config C --name mixed --out {partial}" in err, err

    # Rebuilding over a complete set, stopped by a failure in its second shard: no summary is left.
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(test_set, rebuilt)
    calls = []
    real = fwi_attn.data.simulate.simulate

    def fails_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulation stopped")
        return real(*args, **kwargs)

    monkeypatch.setattr(fwi_attn.data.simulate, "simulate", fails_second)
    rc = main(["testset", str(Path(json.loads((test_set / "testset.json").read_text())["files"][0]["path"]).parent),
               "--config", config, "--name", "mixed", "--out", str(rebuilt), "--variable", "vp", "--shard-size", "5",
               "--device", "cpu", "--quiet", "--overwrite"])
    assert rc == 1 and "simulation stopped" in capsys.readouterr().err
    assert sorted(p.name for p in rebuilt.iterdir()) == ["shard-0000.h5"]


def test_zoom_salt_filter_range_and_seeded_draw(tiny_config, tmp_path, capsys):
    cfg = tiny_config
    coarse = salt_models(cfg, 3, 12, 32, seed=8)  # 20 m cells: zoomed 2x to 24 x 64, two windows each
    coarse[1, :3, :3] = 6000.0  # beyond geology.vmax in model 1's first window
    np.save(tmp_path / "coarse.npy", coarse)
    args = ["testset", str(tmp_path / "coarse.npy"), "--config", config_file(cfg, tmp_path), "--name", "coarse",
            "--model-dx", "20", "--device", "cpu", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "rej")]) == 0
    assert "1 of 6 windows have velocities outside geology.vmin..vmax [1500, 4500] m/s: rejected" in \
        capsys.readouterr().out
    shard = read_shard(tmp_path / "rej" / "shard-0000.h5")
    p = json.loads(shard.attrs["provenance"])
    assert shard.n == 5 and p["files"][0]["resample"] == [2.0, 2.0] and (1, 0) not in zip(p["model"], p["ix"])
    assert main([*args, "--out", str(tmp_path / "clip"), "--out-of-range", "clip"]) == 0
    assert "clipped into range" in capsys.readouterr().out
    shard = read_shard(tmp_path / "clip" / "shard-0000.h5")
    clipped = json.loads(shard.attrs["provenance"])["clipped_cells"]
    assert shard.n == 6 and shard.velocity.max() <= cfg.geology.vmax and clipped[2] > 0 and sum(clipped) == clipped[2]

    salt = (shard.velocity > cfg.evaluate.salt_threshold).mean(axis=(1, 2))
    level = float(np.sort(salt)[3])  # three windows have at least this much salt
    draws = []
    for k in range(2):
        out = tmp_path / f"draw{k}"
        assert main([*args, "--out", str(out), "--out-of-range", "clip", "--min-salt", str(level),
                     "--max-windows", "2", "--seed", "5"]) == 0
        s = read_shard(out / "shard-0000.h5")
        assert s.n == 2 and ((s.velocity > cfg.evaluate.salt_threshold).mean(axis=(1, 2)) >= level).all()
        draws.append(s.velocity)
    np.testing.assert_array_equal(draws[0], draws[1])  # the seed fixes the draw


@pytest.mark.parametrize("make, args, message", [
    (lambda d: (d / "m.txt").write_text("1 2") and d / "m.txt", [], r"m\.txt: unknown model file extension '\.txt'"),
    (lambda d: (d / "m.npy").write_bytes(b"not numpy"), [], r"cannot read velocity model .*m\.npy as \.npy"),
    (lambda d: (d / "m.sgy").write_bytes(b"\0" * 100), [], r"cannot read velocity model .*m\.sgy as SEG-Y"),
    (lambda d: scipy.io.savemat(d / "m.mat", {"a": np.ones((24, 32)), "b": np.ones((24, 32))}), [],
     r"m\.mat has no variable named 'velocity' and 2 numeric"),
    (lambda d: h5py.File(d / "m.h5", "w").create_dataset("vel", data=np.ones((24, 32))), ["--variable", "vp"],
     r"m\.h5 has no dataset 'vp' \(datasets: vel\)"),
    (lambda d: np.save(d / "m.npy", np.full((20, 40), 2000.0)), [], r"m\.npy: models of 20 x 40 cells .* hold no 24 x 32"),
    (lambda d: np.save(d / "m.npy", np.full((24, 32), 6000.0)), [], r"no window of 24 x 32 cells is left of 1"),
    (lambda d: None, [], r"a folder without model files"),
])
def test_bad_inputs_give_one_line_errors_before_simulating(tiny_config, tmp_path, capsys, make, args, message):
    (tmp_path / "in").mkdir()
    given = make(tmp_path / "in")  # a path given on its own, else the folder
    rc = main(["testset", str(given if isinstance(given, Path) else tmp_path / "in"), "--config", config_file(tiny_config, tmp_path), "--name", "bad",
               "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not list((tmp_path / "out").glob("*.h5")) if (tmp_path / "out").exists() else True


def test_an_out_folder_with_shards_is_refused_unless_overwritten(tiny_config, tmp_path, capsys):
    np.save(tmp_path / "m.npy", salt_models(tiny_config, 1, 24, 32, seed=1))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "shard-0007.h5").write_bytes(b"old")
    args = ["testset", str(tmp_path / "m.npy"), "--config", config_file(tiny_config, tmp_path), "--name", "one",
            "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]
    assert main(args) == 1 and "already holds 1 .h5 file" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shard-0000.h5", "testset.json"]
    with pytest.raises(ValueError, match="--fit .* or --model-dx, not both"):
        TestSetOptions(fit=True, model_dx=20.0).check()


def test_fit_resamples_whole_models_like_simulate(tiny_config, tmp_path):
    from fwi_attn.data.velocity_files import load_velocities

    np.save(tmp_path / "deep.npy", salt_models(tiny_config, 2, 36, 48, seed=2))
    assert main(["testset", str(tmp_path / "deep.npy"), "--config", config_file(tiny_config, tmp_path), "--name",
                 "fit", "--fit", "--out", str(tmp_path / "fit"), "--device", "cpu", "--quiet"]) == 0
    shard = read_shard(tmp_path / "fit" / "shard-0000.h5")
    np.testing.assert_allclose(shard.velocity, load_velocities(tmp_path / "deep.npy", 24, 32), rtol=1e-6)
    p = json.loads(shard.attrs["provenance"])
    assert p["files"][0]["resample"] == [24 / 36, 32 / 48] and p["iz"] == p["ix"] == [0, 0]


def test_matlab_v73_files_are_read_in_matlab_axis_order(tiny_config, tmp_path):
    from fwi_attn.data.velocity_files import read_velocity_file

    model = salt_models(tiny_config, 1, 24, 40, seed=9)[0]
    path = tmp_path / "v73.mat"
    # A MATLAB v7.3 file: HDF5 behind a 512-byte header block; MATLAB stores arrays column-major,
    # so h5py sees a 24 x 40 matrix as 40 x 24.
    with h5py.File(path, "w", userblock_size=512) as f:
        f["vp"] = model.T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Wed Dec  2 10:00:00 2026 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM")
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(path)  # what tells the reader to use h5py
    np.testing.assert_array_equal(read_velocity_file(path, "vp")[0], model)
    np.testing.assert_array_equal(read_velocity_file(path)[0], model)  # the only 2-D dataset


# ----------------------------------------------------------------------------- compare-sets


def _flat_models(n: int, v: float = 2000.0) -> np.ndarray:
    return np.full((n, 20, 30), v, dtype=np.float32)


def test_compare_sets_identical_sets_are_at_distance_zero(tiny_dataset, tmp_path, capsys):
    test = tiny_dataset["dir"] / "test"
    rc = main(["compare-sets", str(test), str(test), "--out", str(tmp_path / "cmp"), "--names", "x", "y"])
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "| statistic | x mean | y mean | distance |" in out
    result = json.loads((tmp_path / "cmp" / "compare_sets.json").read_text())
    st = result["statistics"]
    assert result["a"]["dx"] == 10.0 and result["a"]["n_models"] == 8
    for key in ("velocity", "salt_fraction", "salt_top_depth", "body_area", "bodies_per_model"):
        assert st[key]["wasserstein"] == 0.0
    assert st["depth_profile"]["mean_abs"] == 0.0
    assert (tmp_path / "cmp" / "compare_sets.png").stat().st_size > 10_000


def test_compare_sets_measures_known_differences(tiny_dataset, tmp_path, capsys):
    # A: one 3 x 4 salt body per model whose top is at row 2; B: the same models 150 m/s faster
    # outside the salt, and a second salt body (2 x 2) at row 10.
    a = _flat_models(4)
    a[:, 2:5, 3:7] = 4400.0
    b = a.copy()
    b[b < 4200] += 150.0
    b[:, 10:12, 20:22] = 4400.0
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    rc = main(["compare-sets", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--out", str(tmp_path / "cmp"),
               "--dx", "10", "--config", config_file(tiny_dataset["config"], tmp_path)])
    assert rc == 0, capsys.readouterr().err
    st = json.loads((tmp_path / "cmp" / "compare_sets.json").read_text())["statistics"]
    cells = 20 * 30
    # velocity: (600 - 12 - 4) of 600 cells move by 150 m/s, 4 cells by 2400 - but W1 pairs them optimally
    assert st["velocity"]["a"]["mean"] == pytest.approx(a.mean())
    expected = float(np.abs(np.sort(a.ravel()) - np.sort(b.ravel())).mean())  # W1 of equal-size samples
    assert st["velocity"]["wasserstein"] == pytest.approx(expected, rel=1e-6)
    assert st["salt_fraction"]["wasserstein"] == pytest.approx(4 / cells)
    assert st["bodies_per_model"]["wasserstein"] == pytest.approx(1.0)
    assert st["salt_top_depth"]["wasserstein"] == 0.0 and st["salt_top_depth"]["a"]["mean"] == 20.0
    assert st["body_area"]["a"]["mean"] == 1200.0  # 12 cells of 100 m^2

    # A pure shift of every velocity is the Wasserstein distance of the velocity histograms.
    np.save(tmp_path / "shifted.npy", a + 100.0)
    rc = main(["compare-sets", str(tmp_path / "a.npy"), str(tmp_path / "shifted.npy"), "--out",
               str(tmp_path / "shift"), "--salt-threshold", "9000"])
    assert rc == 0, capsys.readouterr().err
    st = json.loads((tmp_path / "shift" / "compare_sets.json").read_text())["statistics"]
    assert st["velocity"]["wasserstein"] == pytest.approx(100.0, rel=1e-6)
    assert st["depth_profile"]["mean_abs"] == pytest.approx(100.0, rel=1e-6)
    assert st["salt_top_depth"]["wasserstein"] is None  # no salt above 9000 m/s in either


def test_compare_sets_bad_inputs(tiny_dataset, tmp_path, capsys):
    np.save(tmp_path / "a.npy", _flat_models(2))
    rc = main(["compare-sets", str(tmp_path / "a.npy"), str(tmp_path / "missing.npy"), "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 1 and "missing.npy: no such set" in err and len(err.strip().splitlines()) == 1
    rc = main(["compare-sets", str(tiny_dataset["dir"] / "test"), str(tmp_path / "a.npy"), "--out",
               str(tmp_path / "c")])
    assert rc == 1 and "cell size is unknown; give it with --dx" in capsys.readouterr().err


def test_family_set_draws_seeded_models_of_another_family(tiny_config, tmp_path, capsys):
    """`--family F --samples N --seed S`: N models of family F on the study's grid, drawn from
    SeedSequence([S, *F.encode()]), through the same windowing and simulation as model files."""
    from fwi_attn.data.testset import generated_models

    cfg_path = config_file(tiny_config, tmp_path)
    out = tmp_path / "ff"
    assert main(["testset", "--family", "flatfault", "--samples", "3", "--seed", "5", "--config", cfg_path,
                 "--name", "transfer-flatfault", "--out", str(out), "--device", "cpu", "--quiet"]) == 0
    shard = read_shard(out / "shard-0000.h5")
    rng = np.random.default_rng(np.random.SeedSequence([5, *b"flatfault"]))
    expected = generate_velocity("flatfault", 3, rng, 24, 32, 10.0, tiny_config.geology)
    np.testing.assert_array_equal(shard.velocity, expected)
    assert (shard.attrs["family"], shard.attrs["dataset"], shard.attrs["seed"]) == ("flatfault", "transfer-flatfault", 5)
    provenance = json.loads(shard.attrs["provenance"])
    assert provenance["files"] == [{"family": "flatfault", "samples": 3, "seed": 5}]
    assert provenance["model"] == [0, 1, 2] and provenance["iz"] == provenance["ix"] == [0, 0, 0]
    # Another seed, other models; the same seed, the same models.
    np.testing.assert_array_equal(generated_models(tiny_config, "flatfault", 3, 5).models, expected)
    assert not np.array_equal(generated_models(tiny_config, "flatfault", 3, 6).models, expected)

    np.save(tmp_path / "m.npy", salt_models(tiny_config, 1, 24, 32, seed=1))
    for args, message in ((["--family", "flatfault", "--samples", "2", str(tmp_path / "m.npy")], "not both"),
                          (["--family", "flatfault", "--samples", "2", "--fit"], "--fit, --model-dx"),
                          (["--family", "granite", "--samples", "2"], "not a velocity-model family"),
                          (["--family", "flatfault"], "--samples"),
                          ([], "give model files or --family")):
        rc = main(["testset", *args, "--config", cfg_path, "--name", "bad", "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err
        assert rc == 1 and message in err and "Traceback" not in err, (args, err)


def test_options_take_the_schemas_defaults_and_round_trip_through_the_command_line():
    """One options record: its defaults are the schema's, and a study.test_sets entry given to
    `fwi-attn testset` as arguments (TestSetOptions.to_args) parses back to the same options."""
    import argparse
    from dataclasses import fields

    from fwi_attn.cli.data import command_testset
    from fwi_attn.config import load_schema

    def build_parser():
        parser = argparse.ArgumentParser()
        command_testset(parser)
        return parser

    entry_schema = load_schema()["properties"]["study"]["properties"]["test_sets"]["items"]["properties"]
    assert {f.name for f in fields(TestSetOptions)} == set(entry_schema) - {"name", "path"}
    for f in fields(TestSetOptions):
        assert f.default == entry_schema[f.name]["default"], f.name
    base = ["--name", "a", "--out", "o", "-c", "default", "m.npy"]
    assert TestSetOptions.from_args(build_parser().parse_args(base)) == TestSetOptions()
    entry = load_config({"study": {"test_sets": [
        {"name": "a", "path": "m", "model_dx": 12.5, "stride": [0, 16], "top": 3, "min_salt": 0.1,
         "max_windows": 5, "seed": 4, "out_of_range": "clip", "variable": "vp"}]}}).study.test_sets[0]
    options = TestSetOptions.from_entry(entry)
    assert options.stride == (0, 16) and options.variable == "vp" and options.out_of_range == "clip"
    args = build_parser().parse_args(base + options.to_args())
    assert TestSetOptions.from_args(args) == options
    fitted = TestSetOptions.from_entry({"name": "b", "path": "m", "fit": True})
    assert fitted.to_args() == ["--fit"]
    assert TestSetOptions.from_args(build_parser().parse_args(base + fitted.to_args())) == fitted
