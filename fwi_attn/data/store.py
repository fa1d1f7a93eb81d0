"""HDF5 shard storage (schema ``fwi-attn/1``): atomic writes, validated reads.

A shard holds ``n`` samples of one dataset split:

==============  =========================  =====================================
name            shape / type               meaning
==============  =========================  =====================================
velocity        float32 [n, nz, nx]        velocity model, m/s
gathers         float32 [n, shot, time,    pressure at the receivers (OpenFWI's
                receiver]                  order), one chunk per sample
source_xz       float64 [shot, 2]          source (x, z) in m
receiver_xz     float64 [receiver, 2]      receiver (x, z) in m
==============  =========================  =====================================

Attributes: ``schema``, ``dx`` (m), ``dt`` (s), ``nt``, ``freq`` (Hz), ``peak_time`` (s),
``seed``, ``config`` (JSON of the full study config), ``versions`` (JSON of fwi_attn,
torch, deepwave), plus ``dataset``, ``split``, ``shard``, ``family``.

Checksums (shards, ``predictions.h5``, ``attention.h5``, ``gathers.h5``): ``data_sha256`` is the SHA-256
of every dataset's name (its path, ``maps/gates.1``, inside a group),
dtype, shape and bytes, hashed from the arrays while they are written; ``meta_sha256`` that of
every other attribute (``data_sha256`` included) as canonical JSON. Opening a file checks
``meta_sha256`` (cheap: an edited ``dt`` is refused); ``fwi-attn info`` and a whole-file read
check ``data_sha256``, and the loaders check it once per file per process (:func:`verify_data`).
A file written before checksums existed has neither: it is read with a warning to regenerate it.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import socket
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

SCHEMA = "fwi-attn/1"
PREDICTIONS_SCHEMA = "fwi-attn-predictions/1"
REQUIRED_ATTRS = ("schema", "dx", "dt", "nt", "freq", "seed", "config", "versions")


class ShardError(ValueError):
    """A shard is missing, truncated, of another schema or internally inconsistent."""


class OutputError(ValueError):
    """An output path cannot be written (checked before any expensive work)."""


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


def check_output(path: str | os.PathLike, *, folder: bool = False, what: str = "--out") -> Path:
    """Fail fast, before any work, if ``path`` (a file, or with ``folder`` a folder) cannot be written.

    The nearest existing ancestor must be a folder in which a file can really be created
    (``os.access`` says yes to root even on a read-only mount, so a probe file is made and
    removed); an existing folder where a file is wanted, or file where a folder is wanted, is refused.

    Raises:
        OutputError: naming the path, what is wrong and what to do.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is an existing file, but an output folder is needed; choose another path")
    if not folder and path.is_dir():
        raise OutputError(f"{what} {path} is an existing folder, but a file path is needed (e.g. {path / 'out.h5'})")
    target = path if folder else path.parent
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what} {path}: cannot create folder {target}, because {existing} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise OutputError(f"{what} {path}: cannot write in {existing} ({e.strerror or e}); choose another "
                          f"path or fix its permissions") from None
    return path


def _size(n: float) -> str:
    """Bytes as a short human-readable size (``3.2 MB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of ``path`` (its nearest
    existing ancestor); None where it cannot be told."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        st = os.statvfs(existing)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


#: Room left beyond a file's own size: HDF5's metadata and the file system's own blocks.
SPACE_MARGIN = 64 * 1024


def check_space(path: str | os.PathLike, nbytes: int, what: str = "--out") -> None:
    """Fail fast, before long work, when the file system of ``path`` has less room than ``nbytes``
    (the size of the file to write, known in advance) plus :data:`SPACE_MARGIN`.

    Raises:
        OutputError: naming the path, the space needed and the space free.
    """
    free = free_bytes(path)
    need = int(nbytes) + SPACE_MARGIN
    if free is not None and free < need:
        raise OutputError(f"{what} {path}: needs about {_size(need)} but only {_size(free)} is free there; free "
                          f"space (or choose another path) and rerun")


def shard_nbytes(n: int, n_shots: int, nt: int, n_receivers: int, nz: int, nx: int) -> int:
    """The size (bytes) of a shard of ``n`` samples: float32 gathers and velocity, plus the
    positions; attributes and HDF5's own metadata fall within :data:`SPACE_MARGIN`."""
    return 4 * n * (n_shots * nt * n_receivers + nz * nx) + 16 * (n_shots + n_receivers)


def _disk_full(e: BaseException, folder: Path) -> bool:
    """Whether a failed write failed for want of space: ENOSPC/EDQUOT anywhere in the exception's
    chain, or a library's own error (torch.save's "unexpected pos", HDF5's write errors) while
    the file system is full."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        return False
    free = free_bytes(folder)
    return free is not None and free < SPACE_MARGIN


def write_h5(tmp: Path, build, **kwargs) -> None:
    """Build an HDF5 file in memory with ``build(h5py.File)`` and write its bytes to ``tmp`` in one
    plain write: a full disk is then one clean ``OSError`` (ENOSPC), where HDF5 writing to the
    disk itself would print "Exception ignored" tracebacks and may crash the interpreter."""
    buf = io.BytesIO()
    with h5py.File(buf, "w", **kwargs) as f:
        build(f)
    with open(tmp, "wb") as out:
        out.write(buf.getbuffer())


def _tmp_prefix(path: Path, pid: int | str) -> str:
    return f".{path.name}.{socket.gethostname()}.{pid}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_orphans(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writers of ``path`` left beside it.

    A temporary file is named ``.<name>.<host>.<pid>.<random><suffix>``; one whose writer ran on
    this host and no longer exists is an orphan (a kill -9 gives no chance to clean up).
    Files of live writers, and of other hosts (a shared file system), are left alone.
    """
    path = Path(path)
    removed = []
    head = f".{path.name}.{socket.gethostname()}."
    with contextlib.suppress(FileNotFoundError):
        for tmp in path.parent.iterdir():
            if not tmp.name.startswith(head):
                continue
            pid = tmp.name[len(head):].split(".", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None):
    """Yield a temporary path beside ``path``; move it into place only on success.

    An interrupted or failed write leaves nothing at ``path`` (and removes the
    temporary file), so a file at its final name is always complete. Temporary files that
    killed writers left behind are removed first (:func:`remove_orphans`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path, os.getpid()), suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file private (0600); results are meant to be shared like any other file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        written = 0
        with contextlib.suppress(OSError):
            written = os.path.getsize(tmp)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if _disk_full(e, path.parent):
            free = free_bytes(path.parent)
            raise OutputError(f"{path}: no space left on the device: it needs more than the {_size(written)} "
                              f"written before the disk filled ({_size(free or 0)} free there now, nothing written "
                              f"at that path); free space (or choose another path) and rerun") from None
        raise


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes: the identity of a checkpoint in the results made from it."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _content_key(path: Path) -> str:
    """A file's content identity: a checksummed HDF5 file's recorded ``data_sha256`` (no data read),
    else the SHA-256 of its bytes."""
    if path.suffix.lower() in (".h5", ".hdf5"):
        with contextlib.suppress(OSError):
            with h5py.File(path, "r") as f:
                value = f.attrs.get(DATA_HASH)
            if value is not None:
                return "data:" + (value.decode() if isinstance(value, bytes) else str(value))
    return "file:" + file_sha256(path)


def check_distinct(paths: Sequence[str | os.PathLike], what: str) -> None:
    """Refuse input files of which two are one: the same path, two paths to the same file (a link,
    ``./a`` beside ``a``), or the same content (a copied shard: equal recorded ``data_sha256``, or
    equal bytes). Their samples would count twice. Missing files are left to the reader to name.

    Raises:
        ValueError: naming both paths and what to do.
    """
    seen: dict[tuple, Path] = {}
    by_size: dict[int, list[Path]] = {}
    for path in map(Path, paths):
        try:
            st = path.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            how = "given twice" if seen[key] == path else f"the same file as {seen[key]}"
            raise ValueError(f"{what}: {path} is {how}; its samples would count twice; give each file once")
        seen[key] = path
        by_size.setdefault(st.st_size, []).append(path)
    for group in by_size.values():
        if len(group) < 2:
            continue
        contents: dict[str, Path] = {}
        for path in group:
            key = _content_key(path)
            if key in contents:
                raise ValueError(f"{what}: {path} holds the same data as {contents[key]} (a copy?); its samples "
                                 f"would count twice; give each file once")
            contents[key] = path


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Write ``obj`` as indented JSON with its ``sha256`` field (:mod:`fwi_attn.io.checked_json`), atomically."""
    from fwi_attn.io.checked_json import dump_checked

    with atomic_path(path) as tmp:
        tmp.write_text(dump_checked(obj))


def package_versions() -> dict:
    import deepwave
    import torch

    from fwi_attn import __version__

    return {"fwi_attn": __version__, "torch": torch.__version__, "deepwave": deepwave.__version__}


def write_shard(path: str | os.PathLike, velocity: np.ndarray, gathers: np.ndarray,
                source_xz: np.ndarray, receiver_xz: np.ndarray, attrs: dict) -> None:
    """Write one shard atomically.

    Args:
        velocity: ``[n, nz, nx]`` m/s.
        gathers: ``[n, shot, time, receiver]``.
        source_xz: ``[shot, 2]`` m.  receiver_xz: ``[receiver, 2]`` m.
        attrs: at least ``dx, dt, nt, freq, seed, config``; ``schema`` and
            ``versions`` are added here. Dicts are stored as JSON strings.
    """
    velocity = np.ascontiguousarray(velocity, dtype=np.float32)
    gathers = np.ascontiguousarray(gathers, dtype=np.float32)
    n, nz, nx = velocity.shape
    if gathers.ndim != 4 or gathers.shape[0] != n:
        raise ShardError(f"{path}: gathers {gathers.shape} do not match {n} velocity models")
    if gathers.shape[1] != len(source_xz) or gathers.shape[3] != len(receiver_xz):
        raise ShardError(f"{path}: gathers {gathers.shape} do not match {len(source_xz)} sources "
                         f"and {len(receiver_xz)} receivers")
    attrs = {"schema": SCHEMA, "versions": package_versions(), **attrs}
    check_space(path, velocity.nbytes + gathers.nbytes, what="shard")
    arrays = {"velocity": velocity, "gathers": gathers,
              "source_xz": np.asarray(source_xz, dtype=np.float64),
              "receiver_xz": np.asarray(receiver_xz, dtype=np.float64)}

    def build(f):
        f.create_dataset("velocity", data=velocity, chunks=(1, nz, nx))
        f.create_dataset("gathers", data=gathers, chunks=(1, *gathers.shape[1:]))
        f.create_dataset("source_xz", data=arrays["source_xz"])
        f.create_dataset("receiver_xz", data=arrays["receiver_xz"])
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value
        seal(f, arrays)

    with atomic_path(path, suffix=".h5.tmp") as tmp:
        write_h5(tmp, build, track_order=True)


@dataclass
class Shard:
    """An open-and-checked shard's metadata plus, when loaded, its arrays."""

    path: Path
    attrs: dict
    n: int
    n_shots: int
    nt: int
    n_receivers: int
    nz: int
    nx: int
    source_xz: np.ndarray
    receiver_xz: np.ndarray
    velocity: np.ndarray | None = None
    gathers: np.ndarray | None = None

    @property
    def config(self) -> dict:
        return json.loads(self.attrs["config"])


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise ShardError(f"{path}: no such shard (generate it with `fwi-attn generate`)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ShardError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from None


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


def check_shard(f: h5py.File, path: Path) -> Shard:
    """Validate an open shard's schema and shapes; return its metadata (arrays not loaded)."""
    schema = f.attrs.get("schema")
    if schema != SCHEMA:
        raise ShardError(f"{path}: schema {schema!r}, expected {SCHEMA!r} (not an fwi-attn shard, "
                         f"or written by an incompatible version)")
    missing = [k for k in REQUIRED_ATTRS if k not in f.attrs]
    missing += [k for k in ("velocity", "gathers", "source_xz", "receiver_xz") if k not in f]
    if missing:
        raise ShardError(f"{path}: missing {', '.join(missing)}")
    v, g = f["velocity"], f["gathers"]
    if v.ndim != 3 or g.ndim != 4:
        raise ShardError(f"{path}: velocity must be [n,nz,nx] and gathers [n,shot,time,receiver], "
                         f"got {v.shape} and {g.shape}")
    n, nz, nx = v.shape
    _, n_shots, nt, n_rec = g.shape
    problems = []
    if g.shape[0] != n:
        problems.append(f"{g.shape[0]} gathers but {n} velocity models")
    if f["source_xz"].shape != (n_shots, 2):
        problems.append(f"source_xz {f['source_xz'].shape} but {n_shots} shots in gathers")
    if f["receiver_xz"].shape != (n_rec, 2):
        problems.append(f"receiver_xz {f['receiver_xz'].shape} but {n_rec} receivers in gathers")
    if int(f.attrs["nt"]) != nt:
        problems.append(f"attribute nt={int(f.attrs['nt'])} but gathers have {nt} samples")
    if problems:
        raise ShardError(f"{path}: inconsistent shapes: " + "; ".join(problems))
    verify_meta(f, path)
    # The checksums guard the file; the shard's metadata is the rest.
    attrs = {k: v for k, v in h5_attrs(f).items() if k not in (META_HASH, DATA_HASH)}
    return Shard(path=path, attrs=attrs, n=n, n_shots=n_shots, nt=nt, n_receivers=n_rec, nz=nz, nx=nx,
                 source_xz=f["source_xz"][()], receiver_xz=f["receiver_xz"][()])


def read_shard(path: str | os.PathLike, load: bool = True) -> Shard:
    """Open, validate and (with ``load``) read a whole shard into memory.

    Raises:
        ShardError: naming the file, for a missing, truncated, foreign or
            inconsistent shard, or one whose data cannot be read back.
    """
    path = Path(path)
    with _open(path) as f:
        shard = check_shard(f, path)
        if load:
            try:
                shard.velocity = f["velocity"][()]
                shard.gathers = f["gathers"][()]
            except (OSError, RuntimeError) as e:
                raise ShardError(f"{path}: data cannot be read (truncated or corrupt?): {e}") from None
            verify_data(f, path, arrays={"velocity": shard.velocity, "gathers": shard.gathers})
    return shard


def validate_shard(path: str | os.PathLike) -> Shard:
    """Fully validate a shard: metadata, every chunk readable, all values finite."""
    shard = read_shard(path, load=True)
    for name in ("velocity", "gathers"):
        arr = getattr(shard, name)
        if not np.isfinite(arr).all():
            bad = np.unique(np.nonzero(~np.isfinite(arr.reshape(len(arr), -1)))[0])
            raise ShardError(f"{path}: {name} has NaN/inf values in samples {bad[:10].tolist()}")
    if (shard.velocity <= 0).any():
        raise ShardError(f"{path}: velocity has non-positive values")
    return shard


def describe(shard: Shard) -> str:
    """A human-readable summary of a shard's metadata (for ``fwi-attn info``)."""
    a = shard.attrs
    versions = json.loads(a["versions"]) if isinstance(a.get("versions"), str) else a.get("versions")
    lines = [
        f"file:       {shard.path}",
        f"schema:     {a['schema']}",
        f"dataset:    {a.get('dataset', '?')} / {a.get('split', '?')} / shard {a.get('shard', '?')} "
        f"(family {a.get('family', '?')}, seed {a['seed']})",
        f"samples:    {shard.n}",
        f"grid:       {shard.nz} x {shard.nx} cells at dx = {a['dx']:g} m",
        f"recording:  {shard.nt} samples at dt = {a['dt']:g} s ({shard.nt * a['dt']:g} s), "
        f"Ricker {a['freq']:g} Hz",
        f"shots:      {shard.n_shots}, x = {shard.source_xz[0, 0]:g} .. {shard.source_xz[-1, 0]:g} m, "
        f"z = {shard.source_xz[0, 1]:g} m",
        f"receivers:  {shard.n_receivers}, x = {shard.receiver_xz[0, 0]:g} .. {shard.receiver_xz[-1, 0]:g} m, "
        f"z = {shard.receiver_xz[0, 1]:g} m",
        f"versions:   {versions}",
    ]
    if shard.velocity is not None:
        lines.append(f"velocity:   {shard.velocity.min():.1f} .. {shard.velocity.max():.1f} m/s")
        lines.append(f"gathers:    rms {float(np.sqrt(np.mean(shard.gathers.astype(np.float64) ** 2))):.3e}")
    return "\n".join(lines)


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
