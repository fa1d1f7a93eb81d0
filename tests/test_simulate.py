"""Physics of the forward modelling against analytic 2-D solutions, and shard generation."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from fwi_attn.data.simulate import forward, generate_shard, shard_attrs, simulate, survey_from_shard
from fwi_attn.data.survey import Survey, SurveyError, acquisition_differences
from fwi_attn.io.shard import read_shard
from fwi_attn.layout import shard_sizes

DX, DT, NT, FREQ, V1 = 5.0, 0.0005, 900, 15.0, 2000.0
#: Largest travel-time error (s) allowed per finite-difference order: low orders lag
#: through numerical dispersion (10 points per wavelength here), high orders do not.
LAG_TOLERANCE = {2: 2.0e-3, 4: 0.5e-3, 8: 0.5e-3}


def line_survey(nz: int, nx: int, source_xz, receiver_xz, accuracy: int = 8) -> Survey:
    return Survey(nz=nz, nx=nx, dx=DX, dt=DT, nt=NT, freq=FREQ, peak_time=0.1,
                  source_xz=np.asarray(source_xz, float), receiver_xz=np.asarray(receiver_xz, float),
                  accuracy=accuracy, pml_width=20, max_vel=3000.0)


def analytic_trace(wavelet: np.ndarray, distance: float, velocity: float) -> np.ndarray:
    """Pressure at ``distance`` (m) from a line source in 2-D: wavelet * the Hankel Green's function.

    deepwave's sign convention makes the recorded pressure the negative of
    ``(-i/4) H0^(2)(w r / c)`` applied to the wavelet, hence the ``+0.25j``.
    """
    n = len(wavelet)
    nfft = 4 * n
    spectrum = np.fft.rfft(wavelet, nfft)
    k = 2 * np.pi * np.fft.rfftfreq(nfft, DT)[1:] / velocity
    green = np.zeros_like(spectrum)
    green[1:] = 0.25j * scipy.special.hankel2(0, k * distance)
    return np.fft.irfft(spectrum * green, nfft)[:n]


def best_lag(trace: np.ndarray, reference: np.ndarray, max_lag: int = 40) -> tuple[float, float]:
    """(correlation, lag in s) maximising the normalised correlation of trace and shifted reference."""
    best = (-2.0, 0.0)
    for lag in range(-max_lag, max_lag + 1):
        shifted = np.roll(reference, lag)
        corr = float(trace @ shifted / np.linalg.norm(trace) / np.linalg.norm(shifted))
        best = max(best, (corr, lag * DT))
    return best


@pytest.mark.parametrize("accuracy", [2, 4, 8])
def test_direct_wave_matches_2d_greens_function(accuracy):
    source = [[100.0, 200.0]]
    receivers = np.stack([np.arange(150.0, 650.0, 50.0), np.full(10, 200.0)], 1)
    survey = line_survey(80, 140, source, receivers, accuracy)
    data = forward(torch.full((1, 80, 140), V1), survey)[0, 0].numpy()  # [time, receiver]
    wavelet = survey.wavelet(torch.float64).numpy()
    for j, rec in enumerate(receivers):
        distance = float(np.linalg.norm(rec - source[0]))
        corr, lag = best_lag(data[:, j], analytic_trace(wavelet, distance, V1))
        assert corr > 0.995, f"offset {distance} m: waveform correlation {corr:.4f}"
        assert abs(lag) <= LAG_TOLERANCE[accuracy], f"offset {distance} m: arrival off by {lag * 1e3:.2f} ms"


def test_reflection_time_from_flat_interface():
    """A flat interface reflects like an image source mirrored in it (pre-critical offsets)."""
    nz, nx, depth, v2 = 80, 120, 200.0, 3000.0
    source = [[300.0, 20.0]]
    receivers = np.stack([np.arange(340.0, 540.0, 40.0), np.full(5, 20.0)], 1)
    survey = line_survey(nz, nx, source, receivers)
    two_layer = torch.full((1, nz, nx), V1)
    rows = int(round(depth / DX))
    two_layer[:, rows:] = v2
    direct = forward(torch.full((1, nz, nx), V1), survey)[0, 0].numpy()
    reflected = forward(two_layer, survey)[0, 0].numpy() - direct
    # The velocity jump sits between cell centres rows-1 and rows: half a cell above `depth`.
    interface = (rows - 0.5) * DX
    wavelet = survey.wavelet(torch.float64).numpy()
    for j, rec in enumerate(receivers):
        image_distance = float(np.hypot(rec[0] - source[0][0], 2 * interface - rec[1] - source[0][1]))
        expected = analytic_trace(wavelet, image_distance, V1)
        corr, lag = best_lag(reflected[:, j], expected)
        assert corr > 0.98, f"receiver {rec}: reflection waveform correlation {corr:.4f}"
        # The discrete interface is smeared over the stencil: allow under half the two-way
        # time across one cell (2 * DX / V1 = 5 ms).
        assert abs(lag) <= 2.0e-3, f"receiver {rec}: reflection time off by {lag * 1e3:.2f} ms"
        # Amplitude relative to the direct wave's, which calibrates the source scaling, against
        # the constant-density plane-wave coefficient at the specular angle (0.2 at normal incidence).
        direct_expected = analytic_trace(wavelet, float(np.linalg.norm(rec - source[0])), V1)
        scale = float(direct[:, j] @ direct_expected / (direct_expected @ direct_expected))
        coefficient = float(reflected[:, j] @ expected / (expected @ expected)) / scale
        theta1 = np.arctan2(abs(rec[0] - source[0][0]) / 2, interface - rec[1])
        cos2 = np.sqrt(1 - (v2 / V1 * np.sin(theta1)) ** 2)
        plane_wave = (v2 * np.cos(theta1) - V1 * cos2) / (v2 * np.cos(theta1) + V1 * cos2)
        assert coefficient == pytest.approx(plane_wave, rel=0.15), f"receiver {rec}"


def test_free_surface_adds_a_ghost():
    """With a free surface the recorded data change (surface reflection) but stay finite."""
    receivers = np.stack([np.arange(100.0, 400.0, 50.0), np.full(6, 20.0)], 1)
    absorbing = line_survey(60, 100, [[250.0, 20.0]], receivers)
    free = Survey(**{**absorbing.__dict__, "free_surface": True})
    v = torch.full((1, 60, 100), V1)
    a, f = forward(v, absorbing), forward(v, free)
    assert torch.isfinite(f).all()
    assert (a - f).norm() > 0.1 * a.norm()


def test_simulate_batches_equal_single_calls(tiny_config):
    survey = Survey.from_config(tiny_config)
    rng = np.random.default_rng(0)
    v = rng.uniform(1600, 4000, (5, survey.nz, survey.nx)).astype(np.float32)
    batched = simulate(v, survey, models_per_call=3)
    single = np.concatenate([simulate(v[i], survey) for i in range(5)])
    assert batched.shape == (5, survey.n_shots, survey.nt, survey.n_receivers)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5 * np.abs(single).max())


def test_velocity_above_max_vel_is_refused(tiny_config):
    survey = Survey.from_config(tiny_config)
    v = np.full((1, survey.nz, survey.nx), 3000.0, np.float32)
    v[0, 5, 7] = survey.max_vel + 500
    with pytest.raises(SurveyError, match=r"exceeds max_vel .*CFL"):
        simulate(v, survey)
    with pytest.raises(SurveyError, match="NaN"):
        simulate(np.full((1, survey.nz, survey.nx), np.nan, np.float32), survey)
    with pytest.raises(SurveyError, match="does not match"):
        simulate(np.full((1, 3, 4), 2000.0, np.float32), survey)


def test_shard_sizes():
    assert shard_sizes(10, 4) == [4, 4, 2]
    assert shard_sizes(8, 4) == [4, 4]
    assert shard_sizes(3, 8) == [3]


def test_generation_is_deterministic_and_order_free(tiny_config, tmp_path):
    # Generate shard 1 before shard 0, then again: identical bytes; shards differ.
    generate_shard(tiny_config, "salt", "train", 1, tmp_path / "b1.h5")
    generate_shard(tiny_config, "salt", "train", 0, tmp_path / "a0.h5")
    generate_shard(tiny_config, "salt", "train", 0, tmp_path / "c0.h5")
    a, b, c = (read_shard(tmp_path / n) for n in ("a0.h5", "b1.h5", "c0.h5"))
    assert a.velocity.tobytes() == c.velocity.tobytes()
    assert a.gathers.tobytes() == c.gathers.tobytes()
    assert a.velocity.tobytes() != b.velocity.tobytes()
    assert a.attrs["split"] == "train" and a.attrs["shard"] == 0 and b.attrs["shard"] == 1


def test_generate_rejects_bad_requests(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="not in the config"):
        generate_shard(tiny_config, "nope", "train", 0, tmp_path / "x.h5")
    with pytest.raises(ValueError, match="has shards 0..1"):
        generate_shard(tiny_config, "salt", "train", 5, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_generate_and_simulate_write_the_same_attributes(tiny_config, tmp_path, capsys):
    import json

    import yaml

    from fwi_attn.cli import main

    generated = tmp_path / "gen.h5"
    generate_shard(tiny_config, "salt", "val", 0, generated)
    gen = read_shard(generated)
    np.save(tmp_path / "models.npy", gen.velocity[:2])
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config.to_dict()))
    simulated = tmp_path / "sim.h5"
    rc = main(["simulate", str(tmp_path / "models.npy"), "--config", str(config), "--out", str(simulated),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    sim = read_shard(simulated)
    # One builder (shard_attrs): generate's set, in its order, plus simulate's two extras.
    assert list(sim.attrs) == list(gen.attrs) + ["source", "source_index"]
    for key in ("schema", "dx", "dt", "nt", "freq", "peak_time", "config", "accuracy", "free_surface", "max_vel"):
        assert sim.attrs[key] == gen.attrs[key], key
    assert gen.attrs["peak_time"] == tiny_config.survey.peak_time == json.loads(gen.attrs["config"])["survey"]["peak_time"]
    assert (sim.attrs["seed"], sim.attrs["split"], sim.attrs["family"]) == (-1, "user", "import")
    survey = Survey.from_config(tiny_config)
    assert acquisition_differences(survey_from_shard(gen), survey) == []
    assert acquisition_differences(survey_from_shard(sim), survey) == []


def test_shard_attrs_extras_may_not_replace_standard_ones(tiny_config):
    survey = Survey.from_config(tiny_config)
    common = dict(dataset="salt", split="train", shard=0, seed=7, family="salt")
    assert shard_attrs(survey, tiny_config, **common, source="m.npy")["source"] == "m.npy"
    with pytest.raises(ValueError, match="extra attribute.*max_vel would replace"):
        shard_attrs(survey, tiny_config, **common, max_vel=1.0)


def test_simulate_file_writes_what_the_command_writes(tiny_config, tmp_path, capsys):
    """The stage function and `fwi-attn simulate` write the same shard (names and contents)."""
    import yaml

    from fwi_attn.cli import main
    from fwi_attn.data.geology import generate_velocity
    from fwi_attn.data.simulate import simulate_file

    s = tiny_config.survey
    models = generate_velocity("salt", 2, np.random.default_rng(5), s.nz, s.nx, s.dx, tiny_config.geology)
    np.save(tmp_path / "models.npy", models)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config.to_dict()))
    by_cli, by_call = tmp_path / "cli", tmp_path / "call"
    by_cli.mkdir(), by_call.mkdir()
    assert main(["simulate", str(tmp_path / "models.npy"), "--config", str(config), "--out",
                 str(by_cli / "sim.h5"), "--device", "cpu"]) == 0, capsys.readouterr().err
    path, n = simulate_file(tiny_config, tmp_path / "models.npy", by_call / "sim.h5", device="cpu")
    assert (path, n) == (by_call / "sim.h5", 2)
    assert sorted(p.name for p in by_cli.iterdir()) == sorted(p.name for p in by_call.iterdir()) == ["sim.h5"]
    a, b = read_shard(by_cli / "sim.h5"), read_shard(by_call / "sim.h5")
    np.testing.assert_array_equal(a.velocity, b.velocity)
    np.testing.assert_array_equal(a.gathers, b.gathers)
    assert {k: v for k, v in a.attrs.items() if k != "versions"} == {k: v for k, v in b.attrs.items() if k != "versions"}
