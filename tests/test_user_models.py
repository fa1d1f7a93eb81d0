"""Users' own models: every model of a file simulated in one call, and prediction over many shards.

Runs on the session's tiny config and dataset (24 x 32 cells, 3 shots, 16 receivers, 200
samples); every random input is seeded.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from fwi_attn.cli import main
from fwi_attn.data.geology import generate_velocity
from fwi_attn.data.simulate import simulate
from fwi_attn.data.survey import Survey
from fwi_attn.data.velocity_files import load_velocities
from fwi_attn.io.predictions import read_predictions
from fwi_attn.io.shard import read_shard
from fwi_attn.learn.inference import predict


def config_file(cfg, tmp_path) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    return str(path)


def stack(cfg, n: int, seed: int = 11) -> np.ndarray:
    """``n`` salt models ``[n, nz, nx]`` (m/s) on the config's grid, from a seeded generator."""
    survey = Survey.from_config(cfg)
    return generate_velocity("salt", n, np.random.default_rng(seed), survey.nz, survey.nx, survey.dx,
                             cfg.geology.to_dict())


# ------------------------------------------------------------------------------- simulate


def test_simulate_cli_runs_every_model_of_a_stack(tiny_config, tmp_path, capsys):
    cfg = tiny_config
    models = stack(cfg, 3)
    np.save(tmp_path / "stack.npy", models)
    out = tmp_path / "shards" / "user.h5"  # a folder that does not exist yet
    rc = main(["simulate", str(tmp_path / "stack.npy"), "--config", config_file(cfg, tmp_path), "--out", str(out),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    assert f"wrote {out}: 3 models from {tmp_path / 'stack.npy'}" in capsys.readouterr().out
    shard = read_shard(out)
    assert shard.n == 3
    np.testing.assert_array_equal(shard.velocity, models)
    survey = Survey.from_config(cfg)
    expected = simulate(models, survey, device="cpu", models_per_call=cfg.survey.models_per_call)
    np.testing.assert_array_equal(shard.gathers, expected)
    assert shard.attrs["source"] == str(tmp_path / "stack.npy")
    assert json.loads(shard.attrs["source_index"]) == [0, 1, 2]
    assert shard.attrs["split"] == "user" and shard.attrs["family"] == "import"


def test_simulate_openfwi_layout_and_single_model(tiny_config, tmp_path):
    models = stack(tiny_config, 2, seed=5)
    np.save(tmp_path / "openfwi.npy", models[:, None])  # OpenFWI's [n, 1, nz, nx]
    np.testing.assert_array_equal(load_velocities(tmp_path / "openfwi.npy", 24, 32), models)
    np.save(tmp_path / "one.npy", models[1])  # a 2-D array is one model
    one = load_velocities(tmp_path / "one.npy", 24, 32)
    assert one.shape == (1, 24, 32) and one.dtype == np.float32
    np.testing.assert_array_equal(one[0], models[1])


@pytest.mark.parametrize(
    "array, message",
    [
        (np.full((1, 50), 2000.0), r"1 x 50 samples.*at least 2 samples"),
        (np.full((24, 200), 2000.0), r"24 x 200 samples.*stretched 6\.25x.*24 x 32 grid"),  # 0.12 vs 0.75
        (np.full((96, 32), 2000.0), r"96 x 32 samples.*stretched 4x"),  # too deep for the grid
        (np.zeros((0, 24, 32)), r"is empty: shape \(0, 24, 32\)"),
    ],
)
def test_unusable_models_are_refused_naming_the_file(tiny_config, tmp_path, capsys, array, message):
    path = tmp_path / "bad_model.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=message) as err:
        load_velocities(path, 24, 32)
    assert "bad_model.npy" in str(err.value)
    out = tmp_path / "never.h5"
    rc = main(["simulate", str(path), "--config", config_file(tiny_config, tmp_path), "--out", str(out)])
    assert rc == 1
    assert "bad_model.npy" in capsys.readouterr().err
    assert not out.exists()


def test_aspect_within_a_factor_of_two_is_resampled(tmp_path):
    z = np.linspace(1500.0, 4500.0, 48)
    np.save(tmp_path / "ramp.npy", np.repeat(z[:, None], 40, axis=1))  # aspect 1.2 vs the grid's 0.75
    out = load_velocities(tmp_path / "ramp.npy", 24, 32)
    # corner-aligned bilinear resampling keeps the physical extent: a linear ramp stays exact
    np.testing.assert_allclose(out[0], np.repeat(np.linspace(1500, 4500, 24)[:, None], 32, 1), rtol=1e-6)


def test_bad_model_in_a_stack_is_named(tmp_path):
    models = np.full((3, 24, 32), 2000.0)
    models[2, 5, 5] = np.nan
    np.save(tmp_path / "s.npy", models)
    with pytest.raises(ValueError, match=r"s\.npy contains NaN or inf values \(model 2 of 3\)"):
        load_velocities(tmp_path / "s.npy", 24, 32)


def test_unwritable_out_fails_before_simulating(tiny_config, tmp_path, capsys):
    np.save(tmp_path / "m.npy", stack(tiny_config, 1))
    (tmp_path / "taken").mkdir()
    rc = main(["simulate", str(tmp_path / "m.npy"), "--config", config_file(tiny_config, tmp_path), "--out",
               str(tmp_path / "taken")])
    err = capsys.readouterr().err
    assert rc == 1 and "existing folder" in err and "simulating" not in err


# -------------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def checkpoint(tiny_dataset, tmp_path_factory):
    from fwi_attn.learn.train import train

    out = tmp_path_factory.mktemp("run")
    train(tiny_dataset["config"], "none", 0, out, epochs=1, progress=False, log=lambda s: None)
    return out / "model.pt"


def test_predict_several_shards_equals_one_at_a_time(tiny_dataset, checkpoint, tmp_path, capsys):
    shards = [str(p) for p in tiny_dataset["shards"]["train"]]  # two shards of 8 samples
    assert len(shards) == 2
    both = read_predictions(predict(checkpoint, shards, None, tmp_path / "both.h5", device="cpu",
                                    log=lambda s: None))
    ones = [read_predictions(predict(checkpoint, s, None, tmp_path / f"one{k}.h5", device="cpu",
                                     log=lambda s: None)) for k, s in enumerate(shards)]
    assert len(both) == 16 and [str(p) for p in both.shards] == shards
    np.testing.assert_array_equal(both.index, np.arange(16))
    np.testing.assert_array_equal(both.prediction, np.concatenate([p.prediction for p in ones]))
    np.testing.assert_array_equal(both.target, np.concatenate([read_shard(s).velocity for s in shards]))
    assert [str(p) for p in ones[0].shards] == [shards[0]]  # one shard: recorded as given, as before

    # The CLI takes several shards, or the folder that holds them (sorted by name).
    folder = str(tiny_dataset["shards"]["train"][0].parent)
    for data in (shards, [folder]):
        out = tmp_path / "cli.h5"
        rc = main(["predict", "--checkpoint", str(checkpoint), "--data", *data, "--out", str(out), "--device", "cpu"])
        assert rc == 0, capsys.readouterr().err
        cli = read_predictions(out)
        assert [str(p) for p in cli.shards] == shards
        np.testing.assert_array_equal(cli.prediction, both.prediction)


def test_predict_refuses_an_empty_folder(checkpoint, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["predict", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "empty"), "--out",
               str(tmp_path / "p.h5")])
    assert rc == 1 and "without *.h5 shards" in capsys.readouterr().err
