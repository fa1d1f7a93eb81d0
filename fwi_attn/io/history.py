r"""``history.csv``: one row per training epoch (``epoch, train_loss, val_mae, val_ssim, lr, seconds``),
written by training (:func:`write_history`); numbers to 8 significant digits, ``\\n`` line ends."""
from __future__ import annotations

import csv
import io
import os

import numpy as np

from fwi_attn.io.files import atomic_path

HISTORY_COLUMNS = ("epoch", "train_loss", "val_mae", "val_ssim", "lr", "seconds")


def write_history(path: str | os.PathLike, history: list[dict]) -> None:
    """``history.csv`` with :data:`HISTORY_COLUMNS` from one dict per epoch, atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HISTORY_COLUMNS)
    for row in history:
        w.writerow([row["epoch"]] + [format(float(row[c]), ".8g") for c in HISTORY_COLUMNS[1:]])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def read_history_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``history.csv`` as dicts of numbers (``epoch`` an int), e.g. to resume training."""
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``history.csv`` (epoch, train_loss, val_mae, val_ssim, lr, seconds) as float arrays, column by column."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}
