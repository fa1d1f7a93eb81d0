"""``attention_salt.json``: how well each attention map of one run picks out salt, per test sample.

Written by :func:`fwi_attn.learn.evaluate.evaluate_checkpoint` beside ``metrics.json``; keys
``schema, variant, seed, dataset, split, checkpoint, n_samples, indices, salt_threshold, grid,
spatial, note, seconds`` and ``levels: {module path: {kind, shape, stride, salt_auc [n],
boundary_auc [n], mean_salt_auc, mean_boundary_auc}}`` (an AUC is null for a sample without salt
or without non-salt cells).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from fwi_attn.io.checked_json import verify_checked
from fwi_attn.layout import RUN

ATTENTION_SALT_SCHEMA = "fwi-attn-attention-salt/1"
ATTENTION_SALT_FILE = RUN.attention_salt


class AttentionSaltError(ValueError):
    """An ``attention_salt.json`` is unreadable or inconsistent."""


def read_attention_salt(path: str | os.PathLike) -> dict:
    """Read and check an ``attention_salt.json`` (written by :func:`fwi_attn.learn.evaluate.evaluate_checkpoint`).

    Raises:
        FileNotFoundError: no such file (it names the command that writes one).
        AttentionSaltError: not JSON, edited since written (its ``sha256``), another schema, or AUC
            lists that do not match ``indices``.
    """
    path = Path(path)
    writer = f"`fwi-attn evaluate --checkpoint DIR/{RUN.model} --out DIR` for this run"
    fix = f"rerun {writer}"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no attention-salt scores; {fix}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AttentionSaltError(f"{path}: not readable JSON ({e}); {fix}") from None
    data = verify_checked(data, path, writer, AttentionSaltError)
    if not isinstance(data, dict) or data.get("schema") != ATTENTION_SALT_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise AttentionSaltError(f"{path}: schema {got!r}, expected {ATTENTION_SALT_SCHEMA!r}; {fix}")
    n = len(data.get("indices", []))
    bad = [k for k, v in data.get("levels", {}).items()
           if len(v.get("salt_auc", [])) != n or len(v.get("boundary_auc", [])) != n]
    if bad:
        raise AttentionSaltError(f"{path}: AUC lists of {', '.join(bad)} do not have one value per index ({n}); {fix}")
    return data
