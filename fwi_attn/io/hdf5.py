"""Checksummed HDF5 result files: sealing, verification, in-memory building and checked opening.

Every HDF5 file the project writes (shards, ``predictions.h5``, ``attention.h5``, ``gathers.h5``)
carries two checksums: ``data_sha256``, the SHA-256 of every dataset's name (its path,
``maps/gates.1``, inside a group), dtype, shape and bytes, hashed from the arrays while they are
written; and ``meta_sha256``, that of every other attribute (``data_sha256`` included) as
canonical JSON. Opening a file checks ``meta_sha256`` (cheap: an edited ``dt`` is refused);
``fwi-attn info`` and a whole-file read check ``data_sha256``, and the loaders check it once per
file per process (:func:`verify_data`). A file written before checksums existed has neither: it
is read with a warning to regenerate it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np


class ShardError(ValueError):
    """A shard (or another HDF5 file) is missing, truncated, of another schema or internally inconsistent."""


class ChecksumError(ShardError):
    """A file's data or metadata differ from the checksum recorded when it was written."""


META_HASH, DATA_HASH = "meta_sha256", "data_sha256"


def data_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over each dataset's name, dtype, shape and bytes, in name order (the ``data_sha256``)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(json.dumps([name, a.dtype.str, list(a.shape)]).encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def meta_digest(attrs: dict) -> str:
    """SHA-256 of every attribute but ``meta_sha256`` itself, as canonical JSON (the ``meta_sha256``)."""
    plain = {k: v for k, v in attrs.items() if k != META_HASH}
    text = json.dumps(plain, sort_keys=True, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    return hashlib.sha256(text.encode()).hexdigest()


def seal(f: h5py.File, arrays: dict[str, np.ndarray]) -> None:
    """Record ``data_sha256`` of the ``arrays`` just written to ``f`` and then ``meta_sha256`` of its
    attributes as they read back (the last step of writing a checksummed file)."""
    f.attrs[DATA_HASH] = data_digest(arrays)
    f.attrs[META_HASH] = meta_digest(h5_attrs(f))


_legacy_warned: set[str] = set()
_verified: set[tuple] = set()  # (path, size, mtime_ns) whose data hash matched in this process


def _regenerate(path: Path, writer: str) -> str:
    return f"the file was changed after it was written, or is corrupt; regenerate it ({writer})"


def verify_meta(f: h5py.File, path: Path, writer: str = "`fwi-attn generate`") -> bool:
    """Check an open file's ``meta_sha256``; False (with one warning per file) for a file written
    before checksums. Raises :class:`ChecksumError` naming the file when it does not match."""
    attrs = h5_attrs(f)
    if META_HASH not in attrs:
        if str(path) not in _legacy_warned:
            _legacy_warned.add(str(path))
            warnings.warn(f"{path}: written before files carried checksums, so edits or corruption cannot be "
                          f"detected; regenerate it ({writer}) to protect it", stacklevel=2)
        return False
    if meta_digest(attrs) != attrs[META_HASH]:
        raise ChecksumError(f"{path}: metadata checksum mismatch (an attribute such as dt or dx differs from "
                            f"what was written); {_regenerate(path, writer)}")
    return True


def verify_data(f: h5py.File, path: Path, writer: str = "`fwi-attn generate`",
                arrays: dict[str, np.ndarray] | None = None) -> None:
    """Check an open file's ``data_sha256`` against its datasets (``arrays``: already read ones),
    once per file (path, size, modification time) per process. Files without a checksum pass
    (:func:`verify_meta` warned about them)."""
    expected = f.attrs.get(DATA_HASH)
    if expected is None:
        return
    expected = expected.decode() if isinstance(expected, bytes) else str(expected)
    try:
        st = os.stat(path)
        key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _verified:
        return
    arrays = dict(arrays or {})
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    try:
        for name in names:
            if name not in arrays:
                arrays[name] = f[name][()]
    except (OSError, RuntimeError) as e:
        raise ShardError(f"{path}: data cannot be read (truncated or corrupt?): {e}") from None
    if data_digest(arrays) != expected:
        raise ChecksumError(f"{path}: data checksum mismatch (the stored arrays differ from what was written); "
                            f"{_regenerate(path, writer)}")
    if key is not None:
        _verified.add(key)


def write_h5(tmp: Path, build, **kwargs) -> None:
    """Build an HDF5 file in memory with ``build(h5py.File)`` and write its bytes to ``tmp`` in one
    plain write: a full disk is then one clean ``OSError`` (ENOSPC), where HDF5 writing to the
    disk itself would print "Exception ignored" tracebacks and may crash the interpreter."""
    buf = io.BytesIO()
    with h5py.File(buf, "w", **kwargs) as f:
        build(f)
    with open(tmp, "wb") as out:
        out.write(buf.getbuffer())


def h5_attrs(obj) -> dict:
    """An HDF5 object's attributes as plain Python values (str, int, float)."""
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()}
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}


@contextlib.contextmanager
def open_result(path: str | os.PathLike, schema: str, *, error: type[Exception], what: str, writer: str):
    """Open a result file of one schema (predictions, attention maps, showcase gathers) for reading,
    checking its ``meta_sha256`` (:func:`verify_meta`; the reader checks the data with :func:`verify_data`).

    Yields ``(file, attrs)``, ``attrs`` without the checksums. Every failure names the file and the
    command that writes it.

    Raises:
        FileNotFoundError: no such file.
        error: not a readable HDF5 file, or of another schema.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist (write it with {writer})")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise error(f"{path}: not a readable HDF5 file ({e}); rerun {writer}") from None
    with f:
        attrs = h5_attrs(f)
        if attrs.get("schema") != schema:
            raise error(f"{path}: schema {attrs.get('schema')!r}, expected {schema!r}; rerun {writer}")
        verify_meta(f, path, writer=writer)
        yield f, {k: v for k, v in attrs.items() if k not in (META_HASH, DATA_HASH)}
