"""``history.csv``: one row per training epoch (``epoch, train_loss, val_mae, val_ssim, lr, seconds``),
written by :func:`fwi_attn.learn.train.write_history`."""
from __future__ import annotations

import csv
import os

import numpy as np


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``history.csv`` (epoch, train_loss, val_mae, val_ssim, lr, seconds) as float arrays."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}
