"""TensorBoard event files of a training run (fwi_attn.learn.tensorboard), read back with
tensorboard's own event reader."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fwi_attn.config import load_config
from fwi_attn.learn.tensorboard import IMAGE_SAMPLES, IMAGE_ZOOM, TENSORBOARD_DIR, colour, fixed_indices, panel
from fwi_attn.learn.train import train

SCALARS = ("loss/train", "val/mae", "val/ssim", "lr", "time/epoch_seconds")


def quiet(line):
    pass


def events(folder) -> EventAccumulator:
    acc = EventAccumulator(str(folder / TENSORBOARD_DIR), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def with_train(cfg, **train_keys):
    raw = cfg.to_dict()
    raw["train"].update(train_keys)
    return load_config(raw)


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_a_run_writes_scalars_every_epoch_and_images_when_due(tiny_dataset, tmp_path):
    cfg = with_train(tiny_dataset["config"], tensorboard=2)
    result = train(cfg, "cbam", 0, tmp_path / "run", epochs=3, progress=False, log=quiet)
    acc = events(tmp_path / "run")
    tags = acc.Tags()
    assert set(SCALARS) <= set(tags["scalars"])
    for tag in SCALARS:
        assert [e.step for e in acc.Scalars(tag)] == [1, 2, 3], tag
    assert [e.value for e in acc.Scalars("val/mae")] == pytest.approx([r["val_mae"] for r in result.history])
    assert [e.value for e in acc.Scalars("lr")] == pytest.approx([r["lr"] for r in result.history])
    # Every 2 epochs and at the last: 2, 3.
    assert [e.step for e in acc.Images("velocity/val")] == [2, 3]
    assert [e.step for e in acc.Images("attention/val")] == [2, 3]  # cbam's spatial maps
    image = acc.Images("velocity/val")[-1]
    n = min(IMAGE_SAMPLES, cfg.datasets["salt"].samples["val"])
    # IMAGE_SAMPLES rows of IMAGE_ZOOM pixels per cell, a gap between; true | predicted | error | bar.
    gap = max(IMAGE_ZOOM, 1)
    assert image.height == n * cfg.survey.nz * IMAGE_ZOOM + (n - 1) * gap
    assert image.width == 3 * (cfg.survey.nx * IMAGE_ZOOM + gap) + 3 * IMAGE_ZOOM


def test_event_files_change_no_weight_and_turning_them_off_writes_none(tiny_dataset, tmp_path):
    cfg = tiny_dataset["config"]
    on = train(with_train(cfg, tensorboard=1), "m2f", 1, tmp_path / "on", epochs=2, progress=False, log=quiet)
    off = train(with_train(cfg, tensorboard=0), "m2f", 1, tmp_path / "off", epochs=2, progress=False, log=quiet)
    flag = train(with_train(cfg, tensorboard=1), "m2f", 1, tmp_path / "flag", epochs=2, progress=False,
                 tensorboard=False, log=quiet)
    assert (tmp_path / "on" / TENSORBOARD_DIR).is_dir()
    assert not (tmp_path / "off" / TENSORBOARD_DIR).exists() and not (tmp_path / "flag" / TENSORBOARD_DIR).exists()
    a, b = weights(tmp_path / "on" / "last.pt"), weights(tmp_path / "off" / "last.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs with event files"
    assert [r["val_mae"] for r in on.history] == [r["val_mae"] for r in off.history] == \
        [r["val_mae"] for r in flag.history]
    # m2f: its masks and salt heads' predictions are drawn too, one column each.
    acc = events(tmp_path / "on")
    assert "attention/val" in acc.Tags()["images"]
    text = [t for t in acc.Tags()["tensors"] if t.startswith("attention/columns")]  # torch adds /text_summary
    columns = acc.Tensors(text[0])[0].tensor_proto.string_val[0].decode()
    assert "salt_heads." in columns and ".guide" in columns, columns


def test_a_resumed_run_appends_once_per_epoch(tiny_dataset, tmp_path):
    cfg = with_train(tiny_dataset["config"], tensorboard=1)
    train(cfg, "none", 0, tmp_path / "run", epochs=3, stop_after=1, progress=False, log=quiet)
    train(cfg, "none", 0, tmp_path / "run", epochs=3, resume=True, progress=False, log=quiet)
    acc = events(tmp_path / "run")
    assert [e.step for e in acc.Scalars("val/mae")] == [1, 2, 3]
    # A fresh start in the same folder replaces the earlier run's curves.
    train(cfg, "none", 0, tmp_path / "run", epochs=2, progress=False, log=quiet)
    assert [e.step for e in events(tmp_path / "run").Scalars("val/mae")] == [1, 2]


def test_the_cli_flag_turns_event_files_off(tiny_dataset, tmp_path):
    import yaml

    from fwi_attn.cli import main

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_dataset["config"].to_dict()))
    assert main(["train", "-c", str(path), "--variant", "none", "--seed", "0", "--out", str(tmp_path / "run"),
                 "--epochs", "1", "--quiet", "--no-tensorboard"]) in (0, None)
    assert (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / TENSORBOARD_DIR).exists()


def test_panels_use_one_fixed_colour_scale():
    lo, hi = 1500.0, 4500.0
    a = np.full((4, 5), lo, dtype=np.float32)
    b = np.full((4, 5), hi, dtype=np.float32)
    img = panel([[a, b]], lo, hi, zoom=1)
    assert img.shape == (4, 5 + 1 + 5 + 1 + 3, 3) and img.dtype == np.float32
    assert np.allclose(img[0, 0], colour(lo, lo, hi)) and np.allclose(img[0, 6], colour(hi, lo, hi))
    assert not np.allclose(colour(lo, lo, hi), colour(hi, lo, hi))
    # Out of range is clipped onto the ends, not rescaled.
    assert np.allclose(colour(10 * hi, lo, hi), colour(hi, lo, hi))


def test_fixed_indices_are_evenly_spaced_and_stable():
    assert fixed_indices(48) == [0, 24, 47] == fixed_indices(48)
    assert fixed_indices(2) == [0, 1] and fixed_indices(0) == []
