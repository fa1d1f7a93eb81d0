"""Shared fixtures: a tiny but real study config and a tiny generated dataset."""
from __future__ import annotations

import copy

import pytest
import torch

from fwi_attn.config import load_config

#: A real, deliberately small study: 24x32 grid, 3 shots, 16 receivers, 0.4 s records.
TINY = {
    "study": {"name": "tiny", "dataset": "salt", "seeds": [0], "variants": ["none", "se"], "threads": 1,
              "device": "cpu"},
    "survey": {"nz": 24, "nx": 32, "dx": 10.0, "dt": 0.002, "nt": 200, "freq": 12.0, "n_shots": 3,
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

    from fwi_attn.data.dataset import compute_stats, split_sources
    from fwi_attn.layout import SPLITS, default_stats_path, shard_path, shard_sizes
    from fwi_attn.data.simulate import generate_shard
    from fwi_attn.data.store import write_json

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
