"""``stats.json``: the normalisation constants and mean velocity model of a dataset's train split.

Written by ``fwi-attn stats`` (:func:`fwi_attn.data.dataset.compute_stats`, :func:`write_stats`) to
``<data_dir>/<dataset>/stats.json``::

    {"schema": "fwi-attn-stats/1", "dataset": "salt", "split": "train",
     "files": [".../train/shard-0000.h5", ...], "n_samples": 320,
     "shape": {"in_shots": 5, "nt": 320, "n_receivers": 64, "nz": 64, "nx": 64},
     "gathers": {"transform": "sign(x)*log1p(k*(t/T)**p*|x|)", "gain_power": 2.0,
                 "gain_scale": 10.0, "raw_min": -46.7, "raw_max": 24.2, "min": -4.09, "max": 3.49},
     "velocity": {"vmin": 1500.0, "vmax": 4500.0, "data_min": 1500.0, "data_max": 4499.5,
                  "data_mean": 2952.2},
     "mean_velocity": [[...nx values...], ...nz rows]}

``gathers.min``/``max`` are of the transformed train gathers (:mod:`fwi_attn.data.normalize`; a
file without ``gain_power`` and ``gain_scale`` means OpenFWI's transform, ``p = 0, k = 1``);
``mean_velocity`` is the train split's mean velocity model ``[nz][nx]`` in m/s, the mean-model
baseline of ``fwi-attn evaluate --baseline mean``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fwi_attn.io.checked_json import verify_checked
from fwi_attn.io.files import write_json
from fwi_attn.io.shard import DatasetError

STATS_SCHEMA = "fwi-attn-stats/1"
GATHER_TRANSFORM = "sign(x)*log1p(k*(t/T)**p*|x|)"


class StatsError(DatasetError):
    """The normalisation file is missing, unreadable or does not fit the data."""


def write_stats(path: str | os.PathLike, stats: dict) -> None:
    """Write a ``stats.json`` atomically, with its checksum."""
    write_json(path, stats)


def load_stats(path: str | os.PathLike) -> dict:
    """Read and check a ``stats.json``.

    Raises:
        StatsError: missing (with the command that makes it), unreadable, edited since written (its
            ``sha256``), or of another schema.
    """
    path = Path(path)
    if not path.is_file():
        raise StatsError(f"normalisation file {path} does not exist: run "
                         f"`fwi-attn stats --config C --dataset D --out {path}` first")
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StatsError(f"{path}: not a readable stats file: {e}") from None
    stats = verify_checked(stats, path, f"`fwi-attn stats --config C --dataset D --out {path}`", StatsError)
    if not isinstance(stats, dict) or stats.get("schema") != STATS_SCHEMA:
        raise StatsError(f"{path}: schema {stats.get('schema') if isinstance(stats, dict) else None!r}, "
                         f"expected {STATS_SCHEMA!r}; rerun `fwi-attn stats`")
    missing = [k for k in ("gathers", "velocity", "shape", "mean_velocity") if k not in stats]
    if missing:
        raise StatsError(f"{path}: missing {', '.join(missing)}; rerun `fwi-attn stats`")
    return stats


def check_stats(stats: dict, data, stats_path: str | os.PathLike = "stats.json") -> None:
    """Refuse stats computed for data of another shape (``data``: a
    :class:`fwi_attn.data.dataset.ShardDataset`)."""
    if dict(stats["shape"]) != data.model_shape():
        raise StatsError(f"{stats_path} was computed for data of shape {stats['shape']}, but "
                         f"{data.sources[0].name} has {data.model_shape()}; rerun `fwi-attn stats`")


def mean_velocity(stats: dict) -> np.ndarray:
    """The train split's mean velocity model, float32 ``[nz, nx]`` in m/s."""
    return np.asarray(stats["mean_velocity"], dtype=np.float32)
