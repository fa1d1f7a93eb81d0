"""``predictions.h5`` (schema ``fwi-attn-predictions/1``): every prediction of one run on one split.

Datasets ``prediction`` and ``target`` float32 ``[n, nz, nx]`` in m/s (one model per chunk),
``index`` int64 ``[n]``; attributes ``schema, variant, seed, dataset, split, shards`` (JSON list),
``checkpoint`` and the checksums of :mod:`fwi_attn.io.hdf5`. Written by ``fwi-attn evaluate``
and ``fwi-attn predict``.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwi_attn.io.files import atomic_path, check_space
from fwi_attn.io.hdf5 import ShardError, open_result, seal, verify_data, write_h5

PREDICTIONS_SCHEMA = "fwi-attn-predictions/1"


@dataclass
class Predictions:
    """Contents of a ``predictions.h5`` (schema ``fwi-attn-predictions/1``).

    Attributes:
        prediction: ``[n, nz, nx]`` predicted velocity, m/s.
        target: ``[n, nz, nx]`` true velocity, m/s.
        index: ``[n]`` sample index within the split, counting through ``shards`` in order.
        attrs: the file's attributes (``variant``, ``seed``, ``dataset``, ``split``, ...).
        shards: the data shards the samples come from, in order.
    """

    path: Path
    prediction: np.ndarray
    target: np.ndarray
    index: np.ndarray
    attrs: dict
    shards: list[Path]

    def __len__(self) -> int:
        return len(self.prediction)


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read and check a ``predictions.h5``.

    Raises:
        FileNotFoundError: no such file.
        ShardError: another schema, missing datasets or attributes, inconsistent shapes.
    """
    path = Path(path)
    with open_result(path, PREDICTIONS_SCHEMA, error=ShardError, what="predictions file",
                     writer="`fwi-attn evaluate` or `fwi-attn predict`") as (f, attrs):
        missing = [k for k in ("prediction", "target", "index") if k not in f]
        missing += [k for k in ("shards",) if k not in f.attrs]
        if missing:
            raise ShardError(f"{path}: missing {', '.join(missing)}")
        raw = {name: f[name][()] for name in ("prediction", "target", "index")}
        verify_data(f, path, writer="`fwi-attn evaluate` or `fwi-attn predict`", arrays=raw)
        prediction = raw["prediction"].astype(np.float32)
        target = raw["target"].astype(np.float32)
        index = raw["index"].astype(np.int64)
    if prediction.ndim != 3 or target.shape != prediction.shape or index.shape != (len(prediction),):
        raise ShardError(f"{path}: prediction {prediction.shape}, target {target.shape} and index "
                           f"{index.shape} must be [n, nz, nx], [n, nz, nx] and [n]")
    try:
        shards = [Path(p) for p in json.loads(attrs["shards"])]
    except (TypeError, ValueError):
        raise ShardError(f"{path}: attribute 'shards' must be a JSON list of shard paths, "
                           f"got {attrs['shards']!r}") from None
    return Predictions(path=path, prediction=prediction, target=target, index=index, attrs=attrs, shards=shards)


def write_predictions(path: str | os.PathLike, prediction: np.ndarray, target: np.ndarray, index: np.ndarray,
                      *, shards: Sequence[str | os.PathLike], variant: str, seed: int | None, dataset: str,
                      split: str, checkpoint: str) -> Path:
    """Write a ``predictions.h5`` (schema ``fwi-attn-predictions/1``) atomically.

    Args:
        prediction, target: ``[n, nz, nx]`` m/s.
        index: ``[n]`` sample index within the split (through ``shards`` in order).
        shards: the data shards the samples were taken from.
    """
    attrs = {"schema": PREDICTIONS_SCHEMA, "variant": variant, "seed": -1 if seed is None else int(seed),
             "dataset": dataset, "split": split, "shards": json.dumps([str(s) for s in shards]),
             "checkpoint": str(checkpoint)}
    arrays = {"prediction": np.asarray(prediction, dtype=np.float32), "target": np.asarray(target, dtype=np.float32),
              "index": np.asarray(index, dtype=np.int64)}
    chunks = (1, *arrays["prediction"].shape[1:])  # one model per chunk, like the shards
    check_space(path, sum(a.nbytes for a in arrays.values()), what="predictions file")

    def build(f):
        f.create_dataset("prediction", data=arrays["prediction"], chunks=chunks)
        f.create_dataset("target", data=arrays["target"], chunks=chunks)
        f.create_dataset("index", data=arrays["index"])
        for key, value in attrs.items():
            f.attrs[key] = value
        seal(f, arrays)

    with atomic_path(path, suffix=".h5.tmp") as tmp:
        write_h5(tmp, build)
    return Path(path)
