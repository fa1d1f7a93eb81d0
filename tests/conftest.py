"""Shared fixtures: a tiny but real study config and a tiny generated dataset."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fwi_attn.config import load_config

#: A real, deliberately small study: 24x32 grid, 3 shots, 16 receivers, 0.5 s records.
TINY = {
    "study": {"name": "tiny", "dataset": "salt", "seeds": [0], "variants": ["none", "se"], "threads": 1,
              "device": "cpu"},
    "survey": {"nz": 24, "nx": 32, "dx": 10.0, "dt": 0.0025, "nt": 200, "freq": 12.0, "n_shots": 3,
               "source_x": [0.0, 310.0], "source_depth": 10.0, "n_receivers": 16,
               "receiver_x": [0.0, 310.0], "receiver_depth": 10.0, "accuracy": 8, "pml_width": 10,
               "models_per_call": 8},
    "geology": {"salt": {"bodies": [1, 2]}},
    "datasets": {"salt": {"family": "salt", "samples": {"train": 16, "val": 8, "test": 8},
                          "shard_size": 8, "seed": 7}},
    "model": {"width": 4, "depth": 2},
    "train": {"epochs": 2, "batch_size": 4, "lr": 0.003},
    "physics": {"samples": 2, "refine": {"samples": 1, "iterations": 2}},
}

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"


def alive(pid: int) -> bool:
    """Whether a process with this PID exists (tests stop what they start by PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_MODEL_FILES: dict[str, bytes] = {}


def refused_when_edited_read_when_legacy(read, edited: Path, legacy: Path, kind: str, writer: str):
    """An HDF5 result file's checksums at work: ``read`` refuses the ``edited`` file in one line
    naming the ``kind`` of checksum and the ``writer`` command that remakes it, and reads
    ``legacy`` (the checksums removed, as written before files carried them) with a warning to
    regenerate it; returns what it read from ``legacy``."""
    import h5py

    from fwi_attn.io.hdf5 import ChecksumError

    name = edited.name.replace(".", r"\.")
    with pytest.raises(ChecksumError, match=rf"{name}: {kind} checksum mismatch.*{writer}") as e:
        read(edited)
    assert "\n" not in str(e.value)
    with h5py.File(legacy, "r+") as f:
        del f.attrs["meta_sha256"], f.attrs["data_sha256"]
    with pytest.warns(UserWarning, match=rf"{legacy.name.replace('.', chr(92) + '.')}: written before files carried "
                                         rf"checksums.*regenerate it"):
        return read(legacy)


def write_model_files(folder: Path) -> None:
    """Seeded velocity models in three formats (.npy, SEG-Y, .mat) at the tiny study's 10 m cells:
    5 windows of 24 x 32 cells (the tiny grid). Written once per session and copied byte for byte,
    since a .mat file's header holds the time it was written (test sets record each file's hash)."""
    import tempfile

    import numpy as np
    import scipy.io

    from fwi_attn.data.geology import generate_velocity
    from fwi_attn.data.velocity_files import save_segy

    if not _MODEL_FILES:
        with tempfile.TemporaryDirectory() as tmp:
            first = Path(tmp)
            rng = np.random.default_rng(11)
            models = generate_velocity("salt_blobs", 3, rng, 24, 64, 10.0, {"salt": {"bodies": [1, 2]}})
            np.save(first / "a.npy", models[:1])  # one row of two windows
            save_segy(first / "b.sgy", models[1], 10.0)  # two windows
            scipy.io.savemat(first / "c.mat", {"velocity": models[2][:, :32]})  # one window
            _MODEL_FILES.update({p.name: p.read_bytes() for p in sorted(first.iterdir())})
    folder.mkdir()
    for name, data in _MODEL_FILES.items():
        (folder / name).write_bytes(data)


#: The tiny study's test sets: files of three formats (in ``<root>/models``), and one family-transfer set.
TINY_TEST_SETS = {"test_sets": [{"name": "mixed", "path": "models", "seed": 3}],
                  "transfer_families": ["flatfault"], "transfer_samples": 4}


def tiny_study_dict(root: Path) -> dict:
    """The tiny config as the workflow tests run it in ``root``: the optional FWI stage on
    (2 iterations), a test set of model files (written into ``root/models``) and a family-transfer set."""
    raw = copy.deepcopy(TINY)
    raw["physics"]["refine"]["enabled"] = True
    write_model_files(root / "models")
    raw["study"].update(copy.deepcopy(TINY_TEST_SETS))
    raw["study"]["test_sets"][0]["path"] = str(root / "models")
    return raw


@pytest.fixture(autouse=True)
def _one_thread_seeded():
    """Tests share two cores; one torch thread and a fixed seed keep results stable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_dict() -> dict:
    """A mutable copy of the tiny config as a plain dict (edit it, then ``load_config`` it)."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory):
    """The tiny config, validated, with data_dir/results_dir in a temporary folder."""
    root = tmp_path_factory.mktemp("study")
    raw = copy.deepcopy(TINY)
    raw["study"].update(data_dir=str(root / "data"), results_dir=str(root / "results"))
    return load_config(raw)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_config):
    """Every shard of the tiny dataset and its ``stats.json``, made once per test session.

    Returns ``{"config": cfg, "dir": <data_dir>/salt, "shards": {split: [paths]}, "stats": path}``.
    """
    from pathlib import Path

    from fwi_attn.data.dataset import compute_stats
    from fwi_attn.data.simulate import generate_shard
    from fwi_attn.data.sources import split_sources
    from fwi_attn.io.files import write_json
    from fwi_attn.layout import SPLITS, default_stats_path, shard_path, shard_sizes

    cfg = tiny_config
    ds = cfg.datasets["salt"]
    shards = {}
    for split in SPLITS:
        shards[split] = []
        for i in range(len(shard_sizes(ds.samples[split], ds.shard_size))):
            path = shard_path(cfg.study.data_dir, "salt", split, i)
            generate_shard(cfg, "salt", split, i, path)
            shards[split].append(path)
    root = Path(cfg.study.data_dir) / "salt"
    stats = default_stats_path(cfg)
    write_json(stats, compute_stats(split_sources(cfg, "train"), cfg.geology.vmin, cfg.geology.vmax, **cfg.normalize,
                                    dataset="salt"))
    return {"config": cfg, "dir": root, "shards": shards, "stats": stats}


# ----------------------------------------------------------------------------- workflow runs


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """The project's Snakefile run by this interpreter's Snakemake in ``workdir``."""
    args = list(args)
    if "--configfile" in args:  # it takes several values: bind the one file so a target may follow
        i = args.index("--configfile")
        args[i:i + 2] = [f"--configfile={args[i + 1]}"]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def write_config(tmp_path: Path, raw: dict, name: str = "tiny.yaml") -> Path:
    raw = copy.deepcopy(raw)
    raw["study"].update(data_dir=str(tmp_path / "data"), results_dir=str(tmp_path / "results"))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny config (with FWI refinement) run end to end by local Snakemake on CPU, once per
    test session (tests/test_workflow.py reads it; tests/test_slurm.py compares a SLURM run with it)."""
    root = tmp_path_factory.mktemp("workflow")
    config = write_config(root, tiny_study_dict(root))
    proc = snakemake(root, "--cores", "2", "--configfile", str(config), "all")
    return {"root": root, "config": config, "study": root / "results" / "tiny", "log": proc.stderr}
