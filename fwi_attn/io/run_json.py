"""A run's JSON results: ``metrics.json`` (``fwi-attn evaluate``), ``physics.json`` (``fwi-attn
physics``) and ``refine.json`` (``fwi-attn refine``), each with the ``sha256`` of
:mod:`fwi_attn.io.checked_json`.

These files carry no ``schema`` field (they predate one; adding it would change every existing
file), so a reader recognises each by the keys it must hold (:data:`REQUIRED`). Their content is
described where it is built: :func:`fwi_attn.learn.evaluate.metrics_record`,
:mod:`fwi_attn.physics.check` and :mod:`fwi_attn.physics.fwi`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from fwi_attn.io.checked_json import verify_checked
from fwi_attn.io.files import write_json
from fwi_attn.layout import RUN

#: The command that writes each file, named in every error about it.
WRITERS = {RUN.metrics: "`fwi-attn evaluate`", RUN.physics: "`fwi-attn physics`", RUN.refine: "`fwi-attn refine`"}

#: The keys each file must hold.
REQUIRED = {
    RUN.metrics: ("variant", "seed", "dataset", "split", "n_samples", "mean", "pooled", "per_sample", "settings"),
    RUN.physics: ("variant", "seed", "dataset", "n_samples", "indices", "mean", "per_sample"),
    RUN.refine: ("start", "optimizer", "iterations", "runs"),
}


class ResultError(ValueError):
    """A run's JSON result is unreadable, edited since written, or lacks what its writer puts there."""


def read_result(path: str | os.PathLike, kind: str) -> dict:
    """Read and check one run's JSON result of ``kind`` (a key of :data:`REQUIRED`, e.g. ``RUN.metrics``).

    Returns:
        The object without its ``sha256`` field.

    Raises:
        FileNotFoundError: no such file (naming the command that writes it).
        ResultError: not a JSON object, a checksum that does not match, or missing keys.
    """
    path = Path(path)
    writer = WRITERS[kind]
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (write it with {writer})")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultError(f"{path}: not a readable JSON result ({e}); rerun {writer}") from None
    obj = verify_checked(obj, path, writer, ResultError)
    if not isinstance(obj, dict):
        raise ResultError(f"{path}: expected a JSON object, got {type(obj).__name__}; rerun {writer}")
    missing = [k for k in REQUIRED[kind] if k not in obj]
    if missing:
        raise ResultError(f"{path}: missing {', '.join(missing)} (not a {kind} of {writer}?); rerun {writer}")
    return obj


def read_metrics(path: str | os.PathLike) -> dict:
    """A ``metrics.json`` (:func:`read_result`)."""
    return read_result(path, RUN.metrics)


def read_physics(path: str | os.PathLike) -> dict:
    """A ``physics.json`` (:func:`read_result`)."""
    return read_result(path, RUN.physics)


def read_refine(path: str | os.PathLike) -> dict:
    """A ``refine.json`` (:func:`read_result`)."""
    return read_result(path, RUN.refine)


def write_result(path: str | os.PathLike, obj: dict, kind: str) -> None:
    """Write one run's JSON result atomically with its checksum, refusing one that lacks a required key
    (its reader would refuse it later, far from the bug)."""
    missing = [k for k in REQUIRED[kind] if k not in obj]
    if missing:
        raise ValueError(f"{path}: a {kind} needs {', '.join(missing)}")
    write_json(path, obj)
