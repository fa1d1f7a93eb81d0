"""``fwi-attn train`` under torchrun: 2 gloo processes on the CPU against one process.

The global batch is ``train.batch_size`` in both, split over the ranks. Data order, steps,
averaged gradients, validation and checkpoints are the one-process run's; what differs on the
CPU is BatchNorm, whose batch statistics each rank takes over its own half of the batch
(torch's SyncBatchNorm runs on GPUs only; on CUDA the ranks use it). Measured on the tiny study
below (2 epochs of 4 steps, variant ``none``, fp32, global batch 4): validation MAE within 1.5e-6
of one process's (0.4427), training loss within 1.3e-3, the weights' relative L2 distance from
one process's 2.5%. Ranks that did not average their gradients would train like one process on
the half batch: 17% from it, validation MAE 1.6e-5 and 7.8e-5 off; the tolerances below sit
between the two.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fwi_attn.cli import main
from fwi_attn.data.dataset import ShardDataset
from fwi_attn.data.normalize import Normalizer
from fwi_attn.data.sources import split_sources
from fwi_attn.io.history import read_history as history_columns
from fwi_attn.io.stats import load_stats
from fwi_attn.layout import default_stats_path
from fwi_attn.learn.ddp import Ranks, torchrun_ranks, train_sampler
from fwi_attn.learn.tensorboard import TENSORBOARD_DIR
from fwi_attn.learn.train import TrainError, make_loader, train, validate

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID")


GUARD = Path(__file__).with_name("ddp_rank_guard.py")


def read_history(path) -> list[dict]:
    """``history.csv`` rows as dicts of numbers, read by the package's one reader."""
    columns = history_columns(path)
    return [{k: (int(v) if k == "epoch" else float(v)) for k, v in zip(columns, values)}
            for values in zip(*columns.values())]


def _torchrun(cfg_path, out, *extra, nproc=2):
    """``torchrun --standalone --nproc_per_node=2 fwi-attn train ...``, every rank but 0 refused
    any write (``ddp_rank_guard.py``); the completed process."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(GUARD), "train", "--config", str(cfg_path), "--variant", "none", "--seed", "0",
           "--out", str(out), "--quiet", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _relative_distance(a: dict, b: dict) -> float:
    keys = [k for k in a if a[k].is_floating_point()]
    num = sum(float((a[k].double() - b[k].double()).square().sum()) for k in keys)
    den = sum(float(a[k].double().square().sum()) for k in keys)
    return (num / den) ** 0.5


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory):
    """One process in-process, and 2 torchrun processes, each 2 epochs from seed 0."""
    from fwi_attn.config import load_config

    raw = tiny_dataset["config"].to_dict()
    raw["train"]["bf16"] = False  # bf16 rounding would blur what is compared
    cfg = load_config(raw)
    root = tmp_path_factory.mktemp("ddp")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
    one = train(cfg, "none", 0, root / "one", epochs=2, progress=False, log=lambda s: None)
    two = _torchrun(cfg_path, root / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    return {"cfg": cfg, "cfg_path": cfg_path, "root": root, "one": one, "two": two}


def test_the_sampler_deals_the_one_process_batches_out_across_ranks(tiny_dataset):
    ds = ShardDataset(split_sources(tiny_dataset["config"], "train"))
    for epoch in (0, 1):
        single = train_sampler(ds, 5, Ranks())
        halves = [train_sampler(ds, 5, Ranks(rank, 2, rank)) for rank in (0, 1)]
        for s in (single, *halves):
            s.set_epoch(epoch)
        one = [b.tolist() for b in make_loader(range(16), 4, shuffle=False, sampler=single)]
        per_rank = [[b.tolist() for b in make_loader(range(16), 2, shuffle=False, sampler=h)] for h in halves]
        assert len(one) == len(per_rank[0]) == len(per_rank[1]) == 4
        for k, batch in enumerate(one):
            assert sorted(batch) == sorted(per_rank[0][k] + per_rank[1][k]), (epoch, k)
    assert list(single) != list(train_sampler(ds, 6, Ranks()))  # the run seed picks the order


def test_two_processes_train_like_one(runs):
    root = runs["root"]
    out = runs["two"].stdout
    # Rank 0 alone reports, logs and writes (the other rank's writes would fail the run: GUARD);
    # no temporary file is left behind.
    assert out.count("finished: best val MAE") == 1 and out.count("epoch 2/2") == 1, out
    assert "2 processes (cpu, 2 samples per process and step)" in out
    assert sorted(p.name for p in (root / "two").iterdir()) == ["history.csv", "last.pt", "model.pt", TENSORBOARD_DIR]
    assert len(list((root / "two" / TENSORBOARD_DIR).glob("events.out.tfevents.*"))) == 1  # rank 0's alone
    h1, h2 = runs["one"].history, read_history(root / "two" / "history.csv")
    assert [r["epoch"] for r in h2] == [1, 2]
    for a, b in zip(h1, h2):
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-7)  # the same steps and schedule (csv: 8 digits)
        assert b["val_mae"] == pytest.approx(a["val_mae"], abs=1e-5)
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=5e-3)
    w1, w2 = _weights(root / "one" / "last.pt"), _weights(root / "two" / "last.pt")
    assert w1.keys() == w2.keys()
    # Per-rank BatchNorm statistics on the CPU (module doc): close, and not equal, as two full
    # copies each training alone on the whole batch would be.
    assert 0 < _relative_distance(w1, w2) < 0.05


def test_validation_is_reduced_over_every_sample(runs):
    """The all-reduced validation MAE is the whole split's for the weights rank 0 saved."""
    from fwi_attn.nn.models import load_model

    cfg = runs["cfg"]
    model = load_model(runs["root"] / "two" / "last.pt")[0]
    norm = Normalizer.from_stats(load_stats(default_stats_path(cfg)))
    model = model.to(memory_format=torch.channels_last)
    val = validate(model, make_loader(ShardDataset(split_sources(cfg, "val"), norm), 4, shuffle=False),
                   device=torch.device("cpu"), channels_last=True)
    assert read_history(runs["root"] / "two" / "history.csv")[-1]["val_mae"] == pytest.approx(val["mae"], rel=1e-6)


def test_resume_under_torchrun_gives_the_same_weights(runs):
    """A 2-process run stopped after epoch 1, left as a killed job leaves it (Snakemake removed
    its declared outputs; a writer died holding a temporary file), resumed by 2 processes: the
    uninterrupted run's weights, bit for bit, and the dead writer's file cleaned up."""
    root = runs["root"]
    part = _torchrun(runs["cfg_path"], root / "part", "--epochs", "2", "--stop-after", "1")
    assert part.returncode == 0 and "stopped after epoch 1/2" in part.stdout, part.stderr[-3000:]
    for name in ("model.pt", "history.csv"):
        (root / "part" / name).unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = root / "part" / f".last.pt.{socket.gethostname()}.{dead.pid}.x1y2.pt.tmp"
    orphan.write_bytes(b"half a checkpoint")
    resumed = _torchrun(runs["cfg_path"], root / "part", "--epochs", "2", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("resuming none seed 0") == 1
    assert not orphan.exists()
    assert sorted(p.name for p in (root / "part").iterdir()) == ["history.csv", "last.pt", "model.pt", TENSORBOARD_DIR]
    for name in ("last.pt", "model.pt"):
        a, b = _weights(root / "two" / name), _weights(root / "part" / name)
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs after resume"


def test_a_batch_that_does_not_split_over_the_processes_is_one_line(tiny_dataset, tmp_path, monkeypatch, capsys):
    raw = tiny_dataset["config"].to_dict()
    raw["train"]["batch_size"] = 3
    cfg_path = tmp_path / "odd.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    for key, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)
    assert torchrun_ranks() == Ranks(0, 2, 0)
    rc = main(["train", "--config", str(cfg_path), "--variant", "none", "--seed", "0", "--out",
               str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and len(err.strip().splitlines()) == 1
    assert "train.batch_size 3 does not split evenly over 2 torchrun processes" in err
    assert not (tmp_path / "run" / "last.pt").exists()
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(TrainError, match="launch several processes with torchrun"):
        torchrun_ranks()


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL, SyncBatchNorm)")
def test_two_cuda_processes_with_syncbatchnorm_train_like_one(runs, tmp_path):
    raw = runs["cfg"].to_dict()
    raw["study"]["device"] = "cuda"
    raw["train"].update(bf16=False, deterministic=True)
    cfg_path = tmp_path / "cuda.yaml"
    cfg_path.write_text(yaml.safe_dump(raw))
    from fwi_attn.config import load_config

    one = train(load_config(raw), "none", 0, tmp_path / "one", epochs=2, progress=False, log=lambda s: None)
    two = _torchrun(cfg_path, tmp_path / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    for a, b in zip(one.history, read_history(tmp_path / "two" / "history.csv")):
        assert b["val_mae"] == pytest.approx(a["val_mae"], rel=1e-4)
    w1, w2 = _weights(tmp_path / "one" / "last.pt"), _weights(tmp_path / "two" / "last.pt")
    assert _relative_distance(w1, w2) < 1e-3  # global-batch statistics: one process's run up to rounding
