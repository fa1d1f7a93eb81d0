"""JSON result files with a checksum: ``metrics.json``, ``physics.json``, ``refine.json``,
``attention_salt.json``, ``selection.json``, ``stats.json`` and every other JSON a command writes.

The writer adds a ``sha256`` field: the SHA-256 of the canonical JSON of the object without that
field (keys sorted, no spaces, as it reads back: ``json.loads(json.dumps(obj))``). A reader refuses
a file whose content no longer matches it (edited or corrupt), naming the file and the command
that regenerates it. A file without the field (written before files carried it, or made by hand)
is read as it is.
"""
from __future__ import annotations

import hashlib
import json
import os

CHECKSUM_FIELD = "sha256"


def _digest(obj: dict) -> str:
    plain = {k: v for k, v in json.loads(json.dumps(obj)).items() if k != CHECKSUM_FIELD}
    return hashlib.sha256(json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def dump_checked(obj: dict) -> str:
    """``obj`` as indented JSON text (its own key order) ending in its ``sha256`` field and a newline."""
    if not isinstance(obj, dict):
        raise TypeError(f"a checked JSON file holds an object, not {type(obj).__name__}")
    plain = {k: v for k, v in obj.items() if k != CHECKSUM_FIELD}
    return json.dumps({**plain, CHECKSUM_FIELD: _digest(plain)}, indent=2) + "\n"


def verify_checked(obj, path: str | os.PathLike, regenerate: str, error: type[Exception] = ValueError):
    """``obj`` as read from ``path``, without its ``sha256`` field, after checking that field.

    Anything but an object, and an object without the field, is returned as it is (the reader
    judges it).

    Raises:
        error: the recorded ``sha256`` does not match the content, naming ``path`` and
            ``regenerate`` (the command that writes the file).
    """
    if not isinstance(obj, dict) or CHECKSUM_FIELD not in obj:
        return obj
    if obj[CHECKSUM_FIELD] != _digest(obj):
        raise error(f"{path}: checksum mismatch (its content differs from what was written: edited or corrupt); "
                    f"regenerate it with {regenerate}")
    return {k: v for k, v in obj.items() if k != CHECKSUM_FIELD}
