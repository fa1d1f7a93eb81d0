"""Physics checks, FWI refinement and prediction for a user's gathers (fwi_attn.physics.check).

Everything runs on tiny grids: the session's tiny dataset (24 x 32 cells, 3 shots, 16
receivers, 200 samples) and a 20 x 30 two-layer model for the inversions.
"""
from __future__ import annotations

import json
import shutil
import warnings

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import refused_when_edited_read_when_legacy
from scipy.signal import butter, sosfiltfilt

from fwi_attn.cli import main
from fwi_attn.config import load_config
from fwi_attn.data.simulate import forward, simulate, survey_from_shard
from fwi_attn.data.survey import AcquisitionError, GridError, Survey, check_acquisition, snap_to_grid
from fwi_attn.io.hdf5 import seal
from fwi_attn.io.predictions import read_predictions, write_predictions
from fwi_attn.io.shard import read_shard
from fwi_attn.io.stats import StatsError
from fwi_attn.physics.check import (
    PhysicsError,
    direct_arrival_times,
    mean_model,
    physics_check,
    read_samples,
    reflection_misfits,
    reflection_window,
    relative_l2,
    trace_correlation,
)
from fwi_attn.physics.fwi import gaussian_smooth, lowpass, plan_memory, refine, starting_model

PHYSICS_KEYS = {"rel_l2", "trace_corr", "baseline_rel_l2", "baseline_trace_corr", "true_rel_l2"}
REFLECTION_KEYS = {f"{p}{m}_reflection" for p in ("", "baseline_", "true_") for m in ("rel_l2", "trace_corr")}


# ----------------------------------------------------------------------------- helpers


def two_layer(nz: int = 20, nx: int = 30) -> tuple[np.ndarray, Survey]:
    """A 2000 / 3000 m/s two-layer model (interface at 100 m) and a surface survey over it."""
    dx = 10.0
    v = np.full((nz, nx), 2000.0, np.float32)
    v[nz // 2:] = 3000.0
    src = snap_to_grid(np.stack([np.linspace(0, (nx - 1) * dx, 3), np.full(3, dx)], 1), dx)
    rec = snap_to_grid(np.stack([np.linspace(0, (nx - 1) * dx, 15), np.full(15, dx)], 1), dx)
    survey = Survey(nz=nz, nx=nx, dx=dx, dt=0.002, nt=150, freq=15.0, peak_time=0.1, source_xz=src,
                    receiver_xz=rec, accuracy=4, pml_width=10, max_vel=3500.0)
    return v, survey


@pytest.fixture(scope="module")
def layered():
    v, survey = two_layer()
    observed = simulate(v, survey, device="cpu")[0]
    return v, survey, observed


def smoothed_predictions(dataset, path, n: int = 3, grid=None, smooth: float = 30.0) -> None:
    """A predictions.h5 whose "prediction" is the test truth smoothed by ``smooth`` m (a network-like answer)."""
    shard = read_shard(dataset["shards"]["test"][0])
    truth = shard.velocity[:n]
    pred = np.stack([gaussian_smooth(t, smooth, shard.attrs["dx"]) for t in truth])
    if grid is not None:  # a model on another grid, e.g. a network's raw output size
        pred = np.stack([np.resize(p, grid) for p in pred])
    write_predictions(path, pred, truth if grid is None else pred, np.arange(n),
                      shards=[str(p) for p in dataset["shards"]["test"]], variant="smooth", seed=0,
                      dataset="salt", split="test", checkpoint="none")


def config_file(cfg, tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return str(path)


# ----------------------------------------------------------------------------- misfit measures


def test_misfit_measures_on_known_cases():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(2, 3, 50, 4)).astype(np.float32)
    assert np.allclose(relative_l2(d, d), 0)
    assert np.allclose(relative_l2(2 * d, d), 1.0)
    assert np.allclose(trace_correlation(d, d), 1.0)
    assert np.allclose(trace_correlation(-3 * d, d), -1.0)  # amplitude-blind, sign-aware
    flat = d.copy()
    flat[:, :, :, 0] = 0.0  # a dead observed trace is left out of the mean
    assert np.allclose(trace_correlation(flat, flat), 1.0)


def test_lowpass_is_a_zero_phase_butterworth():
    """The frequency-domain filter equals scipy's sosfiltfilt on a zero-padded record."""
    dt, nt, corner = 0.002, 200, 8.0
    rng = np.random.default_rng(1)
    x = rng.normal(size=(nt, 3))
    ours = lowpass(torch.tensor(x)[None], corner, dt)[0].numpy()
    pad = np.zeros((4 * nt, 3))
    padded = np.concatenate([pad, x, pad])
    ref = sosfiltfilt(butter(4, corner, fs=1 / dt, output="sos"), padded, axis=0, padtype=None)[4 * nt:5 * nt]
    assert np.abs(ours - ref).max() < 0.02 * np.abs(ref).max()


# ----------------------------------------------------------------------------- reflection misfits


def surface_survey(nz: int, nx: int, source_x, n_receivers: int, dx: float = 10.0, nt: int = 250) -> Survey:
    """Sources at ``source_x`` (m) and ``n_receivers`` receivers across the model, all 10 m deep."""
    src = snap_to_grid(np.stack([np.asarray(source_x, float), np.full(len(source_x), dx)], 1), dx)
    rec = snap_to_grid(np.stack([np.linspace(0, (nx - 1) * dx, n_receivers), np.full(n_receivers, dx)], 1), dx)
    return Survey(nz=nz, nx=nx, dx=dx, dt=0.002, nt=nt, freq=15.0, peak_time=0.1, source_xz=src, receiver_xz=rec,
                  accuracy=4, pml_width=10, max_vel=4500.0)


def test_direct_arrival_times_integrate_the_surface_slowness():
    """offset / v on a uniform surface; on a surface of two velocities, the sum of the two legs."""
    survey = surface_survey(10, 40, [0.0, 200.0], 5)
    v = np.full((10, 40), 2000.0, np.float32)
    offsets = np.abs(survey.receiver_xz[None, :, 0] - survey.source_xz[:, None, 0])
    np.testing.assert_allclose(direct_arrival_times(v, survey), offsets / 2000.0, rtol=1e-12)
    v[:, 20:] = 4000.0  # x >= 200 m: the receivers' row is twice as fast there
    t = direct_arrival_times(np.stack([v, v]), survey)
    assert t.shape == (2, 2, 5)
    # From x = 0 to the last receiver (390 m): 190 m at 2000 m/s, the 10 m across the jump
    # (190 to 200 m) at the mean slowness (trapezoid), 190 m at 4000 m/s.
    np.testing.assert_allclose(t[0, 0, -1], 190 / 2000 + 10 * (1 / 2000 + 1 / 4000) / 2 + 190 / 4000, rtol=1e-12)
    np.testing.assert_allclose(t[1, 1, -1], 190 / 4000, rtol=1e-12)  # from x = 200 m, all fast


def test_reflection_window_follows_its_formula():
    survey = surface_survey(10, 40, [0.0], 3)
    v = np.full((10, 40), 2000.0, np.float32)
    w = reflection_window(v, survey, gain_power=2.0, delay=0.1, taper=0.05)
    assert w.shape == (1, survey.nt, 3) and w.dtype == np.float32
    t = np.arange(survey.nt) * survey.dt
    t_m = survey.receiver_xz[:, 0] / 2000.0 + 0.1  # offset / v + delay
    gain = (t / t[-1]) ** 2
    for r in range(3):
        assert np.all(w[0, t < t_m[r] - 1e-9, r] == 0)
        after = t >= t_m[r] + 0.05 + 1e-9
        np.testing.assert_allclose(w[0, after, r], gain[after], rtol=1e-6)
        inside = (t > t_m[r]) & (t < t_m[r] + 0.05)
        ramp = 0.5 * (1 - np.cos(np.pi * (t[inside] - t_m[r]) / 0.05))
        np.testing.assert_allclose(w[0, inside, r], ramp * gain[inside], rtol=1e-5)
    with pytest.raises(PhysicsError, match="must be >= 0"):
        reflection_window(v, survey, taper=-0.01)


def test_reflection_window_removes_the_direct_wave_and_keeps_the_reflection():
    """A homogeneous model's data are the direct wave alone: the window removes it. Over a 2000 /
    3000 m/s interface at 250 m the window keeps the reflection, at its two-way time at zero offset."""
    nz, nx = 40, 48
    survey = surface_survey(nz, nx, [230.0], 24)
    survey = Survey(**{**survey.__dict__, "receiver_xz": np.concatenate([survey.source_xz, survey.receiver_xz])})
    homogeneous = np.full((nz, nx), 2000.0, np.float32)
    layered = homogeneous.copy()
    layered[25:] = 3000.0
    d = simulate(np.stack([homogeneous, layered]), survey, device="cpu")
    w = reflection_window(homogeneous, survey)
    t = np.arange(survey.nt) * survey.dt
    gained = d[0] * ((t / t[-1]) ** 2)[None, :, None]
    assert np.square(d[0] * w).sum() < 5e-3 * np.square(gained).sum()  # measured 1.6e-3 (PML, 2-D tail)
    kept = d[1] * w
    reflection = (d[1] - d[0]) * w
    assert np.square(reflection).sum() > 0.98 * np.square(kept).sum()  # measured 0.992
    # Zero offset (receiver 0 sits on the source): the peak at peak_time + 2 (250 - 10) m / 2000 m/s.
    k = int(np.argmax(np.abs(kept[0, :, 0])))
    assert abs(t[k] - (0.1 + 2 * 240 / 2000)) <= 2 * survey.dt


def test_reflection_misfit_sees_a_moved_salt_base():
    """Raising a salt body's base by 3 cells (30 m) barely moves the raw-trace misfits, which the
    direct wave dominates; the reflection misfits see it.

    Normalisation: each misfit on its own scale, where 0 is a perfect fit and 1 is a prediction
    of no data at all (relative L2) or of uncorrelated traces (1 - trace correlation); both the
    raw and the reflection measure have that scale, so their values compare directly. As a
    second, harder reference, the same misfits of the model without salt (which shares the
    moved model's direct wave, so the mute helps only by weighting the late data).
    Measured: rel. L2 0.037 -> 0.70 (19x), 1 - corr 0.0011 -> 0.45 (416x); against the
    no-salt model: rel. L2 0.21 -> 0.72 (3.4x), 1 - corr 0.042 -> 0.58 (14x).
    """
    nz, nx, dx = 40, 48, 10.0
    survey = surface_survey(nz, nx, np.linspace(0, (nx - 1) * dx, 3), 24)
    sediment = np.broadcast_to(1800.0 + 1.5 * dx * np.arange(nz)[:, None], (nz, nx)).astype(np.float32)

    def with_salt(base: int) -> np.ndarray:
        v = sediment.copy()
        v[12:base, 14:34] = 4400.0
        return v

    true, moved = with_salt(28), with_salt(25)
    d = simulate(np.stack([true, moved, sediment]), survey, device="cpu")
    observed, window = d[:1], reflection_window(true[None], survey)

    def misfits(k: int) -> tuple[float, float, float, float]:
        refl = reflection_misfits(d[k:k + 1], observed, window)
        return (relative_l2(d[k:k + 1], observed)[0], 1 - trace_correlation(d[k:k + 1], observed)[0],
                refl["rel_l2"][0], 1 - refl["trace_corr"][0])

    old_l2, old_corr, new_l2, new_corr = misfits(1)
    assert new_l2 >= 5 * old_l2 and new_corr >= 5 * old_corr
    ref = misfits(2)
    assert (new_l2 / ref[2]) >= 2 * (old_l2 / ref[0]) and (new_corr / ref[3]) >= 5 * (old_corr / ref[1])
    assert all(m < r for m, r in zip(misfits(1), ref))  # the moved base is still nearer than no salt
    self = reflection_misfits(observed, observed, window)
    assert self["rel_l2"][0] == 0 and np.isclose(self["trace_corr"][0], 1.0)


# ----------------------------------------------------------------------------- physics check


def test_true_model_resimulation_reproduces_the_shard(tiny_dataset):
    """Rebuilding the acquisition from a shard and re-simulating its truth gives its gathers back."""
    path = tiny_dataset["shards"]["test"][0]
    obs = read_samples([path], [0, 5])
    data = simulate(obs.velocity, obs.survey, device="cpu")
    assert relative_l2(data, obs.gathers).max() < 1e-5
    assert trace_correlation(data, obs.gathers).min() > 0.99999


def test_physics_check_reports_misfits(tiny_dataset, tmp_path):
    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=3)
    result = physics_check(cfg, tmp_path / "predictions.h5", samples=2)
    s = result.summary
    assert s["n_samples"] == 2 and s["indices"] == [0, 1]
    per = s["per_sample"]
    assert max(per["true_rel_l2"]) < 1e-5
    # A 30 m smoothing of the truth explains the data far better than the train mean model.
    assert all(0 < p < b for p, b in zip(per["rel_l2"], per["baseline_rel_l2"]))
    assert all(p > b for p, b in zip(per["trace_corr"], per["baseline_trace_corr"]))
    # The reflection misfits: per sample, self-check about zero, and the same ranking.
    assert REFLECTION_KEYS <= set(per) and all(len(per[k]) == 2 for k in REFLECTION_KEYS)
    assert max(per["true_rel_l2_reflection"]) < 1e-4 and min(per["true_trace_corr_reflection"]) > 0.9999
    assert all(0 < p < b for p, b in zip(per["rel_l2_reflection"], per["baseline_rel_l2_reflection"]))
    assert all(r > p for r, p in zip(per["rel_l2_reflection"], per["rel_l2"]))  # the harder view
    assert s["reflection"]["gain_power"] == 2.0 and s["reflection"]["delay_s"] > cfg.survey.peak_time
    train = np.concatenate([read_shard(p).velocity for p in tiny_dataset["shards"]["train"]])
    baseline, source = mean_model(cfg, "salt", 24, 32)
    assert np.allclose(baseline, train.mean(axis=0), atol=1e-3) and "stats.json" in source


def test_physics_figures_show_the_reflection_misfits(tiny_dataset, tmp_path):
    """The study figure gets reflection panels from physics.json: per variant the mean over seeds
    of each run's mean, with the std over seeds; a physics.json without them keeps two panels."""
    from fwi_attn.results.physics_plots import plot_physics, plot_physics_run, reflection_rows
    from fwi_attn.results.study import Study
    from fwi_attn.results.tables import physics_table

    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=2)
    result = physics_check(cfg, tmp_path / "predictions.h5", samples=2)
    s0 = result.summary
    s1 = json.loads(json.dumps(s0))
    s1["mean"]["rel_l2_reflection"] = s0["mean"]["rel_l2_reflection"] + 0.1
    study = Study(tmp_path, {}, {("smooth", 0): {}, ("smooth", 1): {}}, None,
                  physics={("smooth", 0): s0, ("smooth", 1): s1}, variants=["smooth"])
    rows = physics_table(study)
    reflection_rows(study, rows)
    assert rows[0]["rel_l2_reflection"] == pytest.approx(s0["mean"]["rel_l2_reflection"] + 0.05)
    assert rows[0]["rel_l2_reflection_std"] == pytest.approx(0.1 / np.sqrt(2))
    plot_physics(study, tmp_path / "physics.png")
    old = {k: {**v, "mean": {m: x for m, x in v["mean"].items() if not m.endswith("_reflection")}}
           for k, v in study.physics.items()}
    plot_physics(Study(tmp_path, {}, study.metrics, None, physics=old, variants=["smooth"]), tmp_path / "old.png")
    plot_physics_run(result.showcase, s0, tmp_path / "run.png", cfg.geology.vmin, cfg.geology.vmax)
    for png in ("physics.png", "old.png", "run.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_mean_model_needs_stats(tiny_dataset, tmp_path):
    cfg = tiny_dataset["config"].to_dict()
    cfg["study"]["data_dir"] = str(tmp_path)  # a data folder without stats.json
    with pytest.raises(StatsError, match="fwi-attn stats"):
        mean_model(load_config(cfg), "salt", 24, 32)


def test_physics_cli_end_to_end(tiny_dataset, tmp_path, capsys):
    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=3)
    out = tmp_path / "run"
    rc = main(["physics", "--config", config_file(cfg, tmp_path), "--predictions",
               str(tmp_path / "predictions.h5"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "physics.json").read_text())
    for key in ("variant", "seed", "n_samples", "indices", "seconds_per_sample", "mean", "per_sample"):
        assert key in summary
    assert PHYSICS_KEYS <= set(summary["mean"]) and PHYSICS_KEYS <= set(summary["per_sample"])
    assert summary["n_samples"] == cfg.physics.samples == len(summary["per_sample"]["rel_l2"])
    assert summary["mean"]["true_rel_l2"] < 1e-5
    assert (out / "gathers.h5").is_file()
    assert "rel. L2 misfit" in capsys.readouterr().out
    assert not (out / "physics.png").exists()  # only with --figure (the workflow passes it)
    from fwi_attn.io.gathers import read_gathers
    from fwi_attn.results.physics_plots import plot_physics_run

    plot_physics_run(read_gathers(out / "gathers.h5"), summary, tmp_path / "physics.png", cfg.geology.vmin,
                     cfg.geology.vmax)
    assert (tmp_path / "physics.png").stat().st_size > 10_000
    assert main(["physics", "--config", config_file(cfg, tmp_path), "--predictions",
                 str(tmp_path / "predictions.h5"), "--out", str(out), "--figure"]) == 0
    assert (out / "physics.png").stat().st_size > 10_000


def test_physics_of_several_runs_in_one_call_equals_one_call_each(tiny_dataset, tmp_path, capsys):
    """One process checking several runs simulates their shared true and mean models once; every
    run's physics.json and gathers.h5 must be what a call of its own writes."""
    from fwi_attn.io.gathers import read_gathers
    from fwi_attn.results.study import read_json

    cfg = tiny_dataset["config"]
    config = config_file(cfg, tmp_path)
    runs = []
    for k, smooth in enumerate((20.0, 60.0)):
        run = tmp_path / f"run{k}"
        smoothed_predictions(tiny_dataset, run / "predictions.h5", n=4, smooth=smooth)
        runs.append(run)
    assert main(["physics", "--config", config, "--predictions", *(str(r / "predictions.h5") for r in runs)]) == 0
    together = [(read_json(r / "physics.json"), read_gathers(r / "gathers.h5")) for r in runs]
    assert together[0][0]["mean"]["rel_l2"] != together[1][0]["mean"]["rel_l2"]  # two different runs
    for run, (summary, shown) in zip(runs, together):
        alone = tmp_path / f"{run.name}-alone"
        assert main(["physics", "--config", config, "--predictions", str(run / "predictions.h5"),
                     "--out", str(alone)]) == 0
        expected = read_json(alone / "physics.json")  # checked, without its sha256 (which covers the time)
        for doc in (summary, expected):
            doc.pop("seconds_per_sample")
        assert summary == expected
        np.testing.assert_array_equal(shown.predicted, read_gathers(alone / "gathers.h5").predicted)
        np.testing.assert_array_equal(shown.baseline, read_gathers(alone / "gathers.h5").baseline)
    capsys.readouterr()
    assert main(["physics", "--config", config, "--predictions", *(str(r / "predictions.h5") for r in runs),
                 "--out", str(tmp_path / "one")]) == 1
    err = capsys.readouterr().err
    assert "--out names one folder but 2 predictions files" in err and "\n" not in err.strip()
    # A missing file among several is named before any run is simulated.
    (runs[0] / "physics.json").unlink()
    assert main(["physics", "--config", config, "--predictions", str(runs[0] / "predictions.h5"),
                 str(tmp_path / "nope.h5")]) == 1
    assert "nope.h5 does not exist" in capsys.readouterr().err
    assert not (runs[0] / "physics.json").exists()


@pytest.mark.parametrize("samples", [1, 8], ids=["showcase-extra", "showcase-scored"])
def test_physics_writes_the_showcase_gathers(tiny_dataset, tmp_path, capsys, samples):
    """gathers.h5 holds the showcase sample's recorded gathers and a re-simulation of its prediction,
    whether or not that sample is among the scored ones."""
    from fwi_attn.io.gathers import read_gathers
    from fwi_attn.learn.evaluate import showcase_index

    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=8)
    rc = main(["physics", "--config", config_file(cfg, tmp_path), "--predictions", str(tmp_path / "predictions.h5"),
               "--out", str(tmp_path / "run"), "--samples", str(samples)])
    assert rc == 0, capsys.readouterr().err
    preds = read_predictions(tmp_path / "predictions.h5")
    k = showcase_index(preds.target, cfg.evaluate.salt_threshold)
    assert (k >= samples) == (samples == 1)  # the two cases this test is meant to cover
    got = read_gathers(tmp_path / "run" / "gathers.h5")
    shard = read_shard(tiny_dataset["shards"]["test"][0])
    survey = survey_from_shard(shard)
    assert got.index == int(preds.index[k])
    np.testing.assert_array_equal(got.observed, shard.gathers[k])
    np.testing.assert_array_equal(got.truth, shard.velocity[k])
    prediction = np.clip(preds.prediction[k], cfg.geology.vmin, survey.max_vel)
    np.testing.assert_array_equal(got.prediction, prediction)
    direct = simulate(prediction[None], survey, device="cpu", models_per_call=1)[0]
    np.testing.assert_allclose(got.predicted, direct, rtol=0, atol=1e-6 * np.abs(direct).max())
    baseline = simulate(mean_model(cfg, "salt", 24, 32)[0][None], survey, device="cpu", models_per_call=1)[0]
    np.testing.assert_allclose(got.baseline, baseline, rtol=0, atol=1e-6 * np.abs(baseline).max())
    assert (got.dt, got.dx) == (float(shard.attrs["dt"]), float(shard.attrs["dx"]))
    np.testing.assert_array_equal(got.source_xz, shard.source_xz)
    np.testing.assert_array_equal(got.receiver_xz, shard.receiver_xz)
    assert (got.attrs["variant"], got.attrs["seed"], got.attrs["dataset"]) == ("smooth", 0, "salt")


def test_gathers_reader_names_the_file(tmp_path):
    from fwi_attn.io.gathers import GathersError, read_gathers

    with pytest.raises(FileNotFoundError, match=r"gathers file .*nowhere.*fwi-attn physics"):
        read_gathers(tmp_path / "nowhere" / "gathers.h5")
    with h5py.File(tmp_path / "gathers.h5", "w") as f:
        f.attrs["schema"] = "fwi-attn-gathers/1"
        f.attrs["index"] = 0
    with pytest.raises(GathersError, match=r"gathers\.h5: missing dt, dx, observed.*rerun `fwi-attn physics`"), \
            pytest.warns(UserWarning, match="written before files carried checksums"):  # hand-made: none
        read_gathers(tmp_path / "gathers.h5")


@pytest.mark.parametrize("edit", ["gathers", "dt"])
def test_an_edited_gathers_file_is_refused_and_one_without_checksums_read_with_a_warning(
        tiny_dataset, tmp_path, capsys, edit):
    """gathers.h5 carries data and metadata checksums: an edited trace value or dt is refused in one
    line naming the file and the command that rewrites it; a file written before checksums is read
    with the warning to regenerate it."""
    from fwi_attn.io.gathers import read_gathers

    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=2)
    rc = main(["physics", "--config", config_file(cfg, tmp_path), "--predictions", str(tmp_path / "predictions.h5"),
               "--out", str(tmp_path / "run"), "--samples", "1"])
    assert rc == 0, capsys.readouterr().err
    path = tmp_path / "run" / "gathers.h5"
    legacy = tmp_path / "old" / "gathers.h5"
    legacy.parent.mkdir()
    shutil.copy(path, legacy)
    want = read_gathers(path)
    assert "meta_sha256" not in want.attrs
    with h5py.File(path, "r+") as f:
        if edit == "gathers":
            f["observed"][0, 10, 3] = f["observed"][0, 10, 3] * 2 + 1e-3
        else:
            f.attrs["dt"] = 2 * want.dt
    kind = {"gathers": "data", "dt": "metadata"}[edit]
    old = refused_when_edited_read_when_legacy(read_gathers, path, legacy, kind, "fwi-attn physics")
    np.testing.assert_array_equal(old.observed, want.observed)


def test_prediction_on_wrong_grid_is_refused(tiny_dataset, tmp_path, capsys):
    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=2, grid=(20, 32))
    with pytest.raises(GridError, match=r"20 x 32 grid but the data were recorded over a 24 x 32 grid"):
        physics_check(cfg, tmp_path / "predictions.h5")
    # Through the CLI: one clear line, exit status 1.
    rc = main(["physics", "--config", config_file(cfg, tmp_path), "--predictions",
               str(tmp_path / "predictions.h5"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert rc == 1 and "20 x 32 grid" in err and len(err.strip().splitlines()) == 1
    # A starting model on the wrong grid for refine.
    np.save(tmp_path / "start.npy", np.full((20, 30), 2500.0, np.float32))
    rc = main(["refine", "--config", config_file(cfg, tmp_path), "--data", str(tiny_dataset["shards"]["test"][0]),
               "--model-start", str(tmp_path / "start.npy"), "--out", str(tmp_path / "refine")])
    assert rc == 1 and "20 x 30 grid" in capsys.readouterr().err


def _resealed(f: h5py.File) -> None:
    """An edited file's checksums made to match again: the file then looks as if written so, and the
    check under test (not the checksum) is what must refuse it."""
    seal(f, {n: f[n][()] for n in f})


def _altered_copy(src, dst, **change):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        if "dt" in change:
            f.attrs["dt"] = change["dt"]
        if "source_shift" in change:
            f["source_xz"][0, 0] += change["source_shift"]
        _resealed(f)
    return dst


@pytest.mark.parametrize("change", [{"dt": 0.0021}, {"source_shift": 10.0}], ids=["dt", "source"])
def test_data_from_another_acquisition_is_refused(tiny_dataset, tmp_path, change):
    """Data whose recorded acquisition is not the one that made them fail the true-model self-check."""
    cfg = tiny_dataset["config"]
    test = tiny_dataset["shards"]["test"][0]
    altered = _altered_copy(test, tmp_path / "shard-0000.h5", **change)
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=1)
    with h5py.File(tmp_path / "predictions.h5", "r+") as f:
        f.attrs["shards"] = json.dumps([str(altered)])
        _resealed(f)
    with pytest.raises(AcquisitionError, match="self-check failed.*not the one the data were simulated with"):
        physics_check(cfg, tmp_path / "predictions.h5", samples=1)


def test_predictions_of_other_data_are_refused_as_a_start(tiny_dataset, tmp_path):
    """refine --data X --model-start P: P must come from data of X's acquisition."""
    cfg = tiny_dataset["config"]
    test = tiny_dataset["shards"]["test"][0]
    other = _altered_copy(test, tmp_path / "other.h5", source_shift=10.0)
    a, b = survey_from_shard(read_shard(test, load=False)), survey_from_shard(read_shard(other, load=False))
    with pytest.raises(AcquisitionError, match=r"sources positions differ \(first at #0"):
        check_acquisition(a, b, "A", "B")
    with pytest.raises(AcquisitionError):
        read_samples([test, other], [0])  # one split, two acquisitions
    smoothed_predictions(tiny_dataset, tmp_path / "pred.h5", n=2)
    with h5py.File(tmp_path / "pred.h5", "r+") as f:
        f.attrs["shards"] = json.dumps([str(other)])
        _resealed(f)
    rc = main(["refine", "--config", config_file(cfg, tmp_path), "--data", str(test),
               "--model-start", str(tmp_path / "pred.h5"), "--out", str(tmp_path / "r")])
    assert rc == 1


# ----------------------------------------------------------------------------- refinement


@pytest.mark.parametrize("optimizer,lr,iterations,gain", [("adam", 20.0, 40, 0.9), ("lbfgs", 1.0, 10, 0.8)])
def test_fwi_from_smoothed_start_lowers_misfit_and_model_error(layered, optimizer, lr, iterations, gain):
    """Measured: Adam 158 -> 129 m/s MAE and SSIM 0.715 -> 0.738 in 40 iterations, L-BFGS 158 -> 108 m/s and
    SSIM 0.715 -> 0.821 in 10. Adam's first steps move every cell by about lr whatever its gradient, which
    roughens the model: after 20 iterations its MAE has fallen (141 m/s) but OpenFWI's SSIM has not yet risen
    (0.707), so the test runs Adam long enough for the structure to improve too."""
    truth, survey, observed = layered
    start = starting_model("smooth", dx=survey.dx, truth=truth, sigma_m=40.0)
    res = refine(start, observed, survey, vmin=1500.0, vmax=3500.0, iterations=iterations, optimizer=optimizer,
                 lr=lr, truth=truth, device="cpu")
    assert res.final["rel_l2"] < 0.5 * res.initial["rel_l2"]
    assert res.final["mae_ms"] < gain * res.initial["mae_ms"]
    assert res.final["ssim"] > res.initial["ssim"]
    assert res.iterations == iterations and len(res.history) == len(res.mae_history) == iterations
    assert res.history[-1] < res.history[0]
    assert res.mae_history[0] == pytest.approx(res.initial["mae_ms"], rel=1e-5)


def test_multiscale_stages(layered):
    truth, survey, observed = layered
    start = starting_model("background", dx=survey.dx, truth=truth, sigma_m=40.0)
    res = refine(start, observed, survey, vmin=1500.0, vmax=3500.0, iterations=4, frequencies=[8.0, 100.0],
                 truth=truth, device="cpu")
    assert [s["corner_hz"] for s in res.stages] == [8.0, None]  # 100 Hz is beyond the wavelet: full band
    low = res.stages[0]
    assert low["before"]["band_rel_l2"] != low["before"]["rel_l2"]
    assert res.stages[1]["before"]["rel_l2"] == low["after"]["rel_l2"]
    assert res.final["rel_l2"] < res.initial["rel_l2"]


@pytest.mark.parametrize("optimizer,lr", [("adam", 400.0), ("lbfgs", 1.0)])
def test_refinement_stays_within_bounds(layered, optimizer, lr):
    """Bounds tighter than the truth and a huge step: the model must press against them, not cross."""
    truth, survey, observed = layered
    vmin, vmax = 2200.0, 2800.0
    start = starting_model("ramp", dx=survey.dx, truth=truth, ramp=(1500.0, 3500.0))  # starts outside
    res = refine(start, observed, survey, vmin=vmin, vmax=vmax, iterations=6, optimizer=optimizer, lr=lr,
                 device="cpu")
    assert res.velocity.min() >= vmin and res.velocity.max() <= vmax
    assert res.velocity.max() > vmax - 100.0  # the bound is active, so the test means something
    with pytest.raises(PhysicsError, match="exceeds max_vel"):
        refine(start, observed, survey, vmin=vmin, vmax=4000.0, iterations=1)


def test_memory_plan_falls_back_to_compression_and_fewer_shots(layered):
    """Less free memory -> compressed history, then fewer shots per call, finally disk."""
    truth, survey, observed = layered
    roomy = plan_memory(survey, "cpu", available_bytes=2 ** 34)
    assert roomy.shots_per_call == survey.n_shots and roomy.storage == {}
    plans, avail = [], 2.0 * roomy.estimate_bytes  # headroom 0.5: this is the least that still fits
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = plan_memory(survey, "cpu", available_bytes=int(avail))
        plans.append(plan)
        if plan.storage.get("storage_mode") == "disk":
            assert "does not fit in memory" in str(caught[0].message)
            break
        avail *= 0.8
    assert plans[0].storage == {} and plans[0].shots_per_call == survey.n_shots
    assert any(p.storage == {"storage_compression": True} and p.shots_per_call == survey.n_shots for p in plans)
    one = [p for p in plans if p.shots_per_call == 1 and p.storage.get("storage_mode") != "disk"]
    assert one and all(a.estimate_bytes >= b.estimate_bytes for a, b in zip(plans, plans[1:-1]))
    # One shot per call, compressed: the same optimisation within the compression's error.
    start = starting_model("smooth", dx=survey.dx, truth=truth, sigma_m=40.0)
    kw = dict(vmin=1500.0, vmax=3500.0, iterations=3, truth=truth, device="cpu")
    ref = refine(start, observed, survey, memory=roomy, **kw)
    chunked = refine(start, observed, survey, memory=one[0], **kw)
    assert np.allclose(chunked.history, ref.history, rtol=1e-3)
    assert np.abs(chunked.velocity - ref.velocity).mean() < 1.0  # m/s


def test_refine_cli_from_predictions(tiny_dataset, tmp_path, capsys):
    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=2)
    out = tmp_path / "refine"
    rc = main(["refine", "--config", config_file(cfg, tmp_path), "--predictions", str(tmp_path / "predictions.h5"),
               "--sample", "1", "--iterations", "2", "--frequencies", "10", "40", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "refine.json").read_text())
    assert summary["start"] == "prediction" and len(summary["runs"]) == 1
    run = summary["runs"][0]
    assert [s["iterations"] for s in run["stages"]] == [2, 2]
    for key in ("rel_l2", "trace_corr", "mae_ms", "ssim"):
        assert key in run["initial"] and key in run["final"]
    refined = np.load(out / "refined.npy")
    assert refined.shape == (1, 24, 32)
    assert refined.min() >= cfg.geology.vmin and refined.max() <= cfg.geology.vmax
    assert (out / "refine.png").is_file()
    assert "stage 2/2" in capsys.readouterr().out


def test_user_model_sequence(tiny_dataset, tmp_path, capsys):
    """docs/user_model.md end to end: simulate a user's model, predict it with a checkpoint, refine."""
    from fwi_attn.nn.models import create_model, save_checkpoint

    cfg = tiny_dataset["config"]
    cfg_path = config_file(cfg, tmp_path)
    user = np.full((40, 60), 2000.0, np.float32)  # a model on its own (finer) grid
    user[18:] = 3000.0
    user[25:32, 20:40] = 4400.0
    np.save(tmp_path / "user.npy", user)
    assert main(["simulate", str(tmp_path / "user.npy"), "--config", cfg_path, "--out",
                 str(tmp_path / "gathers.h5")]) == 0
    shutil.copy(tiny_dataset["stats"], tmp_path / "stats.json")
    # An untrained network whose input and output sizes differ from the data's: predict resamples.
    torch.manual_seed(0)
    net = create_model("none", in_shots=3, nt=100, n_receivers=8, nz=12, nx=16, width=4, depth=2)
    save_checkpoint(tmp_path / "model.pt", net, variant="none", seed=0)
    assert main(["predict", "--checkpoint", str(tmp_path / "model.pt"), "--data", str(tmp_path / "gathers.h5"),
                 "--stats", str(tmp_path / "stats.json"), "--out", str(tmp_path / "pred.h5"), "--device", "cpu"]) == 0
    pred = read_predictions(tmp_path / "pred.h5")
    assert pred.prediction.shape == (1, 24, 32)
    assert cfg.geology.vmin <= pred.prediction.min() and pred.prediction.max() <= cfg.geology.vmax
    rc = main(["refine", "--config", cfg_path, "--data", str(tmp_path / "gathers.h5"), "--model-start",
               str(tmp_path / "pred.h5"), "--iterations", "2", "--out", str(tmp_path / "refine")])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "refine" / "refine.json").read_text())
    assert summary["start"] == "prediction"
    assert summary["runs"][0]["final"]["rel_l2"] < summary["runs"][0]["initial"]["rel_l2"]
    # A network taking another number of shots is refused with a clear message.
    save_checkpoint(tmp_path / "five.pt", create_model("none", in_shots=5, nt=100, n_receivers=8, nz=12, nx=16,
                                                       width=4, depth=2))
    rc = main(["predict", "--checkpoint", str(tmp_path / "five.pt"), "--data", str(tmp_path / "gathers.h5"),
               "--stats", str(tmp_path / "stats.json"), "--out", str(tmp_path / "p5.h5")])
    assert rc == 1 and "takes 5 shots" in capsys.readouterr().err


def test_forward_batches_match_single_runs(layered):
    """The physics check simulates many models per call; results must not depend on the batching."""
    truth, survey, _ = layered
    models = torch.tensor(np.stack([truth, gaussian_smooth(truth, 40.0, survey.dx)]))
    with torch.no_grad():
        both = forward(models, survey)
        one = forward(models[1:], survey)
    assert torch.allclose(both[1], one[0], rtol=0, atol=1e-6 * one.abs().max().item())


def test_predictions_pointing_at_other_shards_are_refused(tiny_dataset, tmp_path):
    """A 'shards' attribute naming other data (moved or regenerated shards) must not pass silently."""
    cfg = tiny_dataset["config"]
    smoothed_predictions(tiny_dataset, tmp_path / "predictions.h5", n=2)
    with h5py.File(tmp_path / "predictions.h5", "r+") as f:
        f.attrs["shards"] = json.dumps([str(tiny_dataset["shards"]["val"][0])])
        _resealed(f)
    with pytest.raises(PhysicsError, match="does not list the data its predictions were made from"):
        physics_check(cfg, tmp_path / "predictions.h5")


def _untimed(value):
    """A physics.json / refine.json dictionary without what the machine measured while it ran
    (wall-clock times, free memory) and without the file's own checksum, which covers them."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items()
                if "seconds" not in k and k not in ("sha256", "available_mib")}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_stage_functions_write_what_the_commands_write(tiny_dataset, tmp_path, capsys):
    """run_physics and refine_samples write the files `fwi-attn physics` and `fwi-attn refine` write
    (names and contents; the figures are the commands' alone)."""
    from fwi_attn.io.gathers import read_gathers
    from fwi_attn.layout import RUN
    from fwi_attn.physics.check import run_physics
    from fwi_attn.physics.fwi import refine_samples

    cfg = tiny_dataset["config"]
    predictions = tmp_path / "predictions.h5"
    smoothed_predictions(tiny_dataset, predictions, n=2)
    cli, call = tmp_path / "cli", tmp_path / "call"
    assert main(["physics", "--config", config_file(cfg, tmp_path), "--predictions", str(predictions),
                 "--out", str(cli), "--samples", "2", "--device", "cpu"]) == 0, capsys.readouterr().err
    run_physics(cfg, predictions, call, samples=2, device="cpu")
    assert sorted(p.name for p in cli.iterdir()) == sorted(p.name for p in call.iterdir()) == sorted(
        [RUN.physics, RUN.gathers])
    assert _untimed(json.loads((cli / RUN.physics).read_text())) == _untimed(json.loads((call / RUN.physics).read_text()))
    a, b = read_gathers(cli / RUN.gathers), read_gathers(call / RUN.gathers)
    np.testing.assert_array_equal(a.observed, b.observed)
    np.testing.assert_array_equal(a.predicted, b.predicted)

    cli, call = tmp_path / "cli-refine", tmp_path / "call-refine"
    assert main(["refine", "--config", config_file(cfg, tmp_path), "--predictions", str(predictions),
                 "--sample", "0", "--iterations", "1", "--out", str(cli), "--device", "cpu"]) == 0, \
        capsys.readouterr().err
    call.mkdir()
    refine_samples(cfg, call, predictions=predictions, sample=[0], iterations=1, device="cpu")
    assert {p.name for p in cli.iterdir()} == {p.name for p in call.iterdir()} | {RUN.refine_figure}
    assert {p.name for p in call.iterdir()} == {RUN.refine, RUN.refined}
    assert _untimed(json.loads((cli / RUN.refine).read_text())) == _untimed(json.loads((call / RUN.refine).read_text()))
    np.testing.assert_array_equal(np.load(cli / RUN.refined), np.load(call / RUN.refined))


def test_storage_option_narrows_the_memory_plan(layered):
    """physics.refine.storage: exact never compresses the history, compressed always does."""
    _, survey, _ = layered
    roomy = 2 ** 34
    assert plan_memory(survey, "cpu", available_bytes=roomy, storage="compressed").storage == {
        "storage_compression": True}
    assert plan_memory(survey, "cpu", available_bytes=roomy, storage="exact").storage == {}
    tight = int(2.0 * plan_memory(survey, "cpu", available_bytes=roomy).estimate_bytes * 0.6)
    auto = plan_memory(survey, "cpu", available_bytes=tight)
    exact = plan_memory(survey, "cpu", available_bytes=tight, storage="exact")
    assert auto.storage == {"storage_compression": True} and auto.shots_per_call == survey.n_shots
    assert exact.storage == {} and exact.shots_per_call < survey.n_shots
    with pytest.raises(PhysicsError, match="physics.refine.storage 'lossy' is not one of auto, exact, compressed"):
        plan_memory(survey, "cpu", storage="lossy")
    assert load_config({}).physics.refine.storage == "auto"


def test_refinement_plans_within_the_jobs_memory_limit(monkeypatch):
    """On a cluster node with more free memory than the job asked for, the memory plan keeps to the
    job's limit (SLURM_MEM_PER_NODE, MB), not the node's free memory."""
    from fwi_attn.physics.fwi import available_memory

    node = available_memory(torch.device("cpu"))
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "1024")
    assert available_memory(torch.device("cpu")) == min(node, 1024 * 2 ** 20)
