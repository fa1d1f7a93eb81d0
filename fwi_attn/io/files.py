"""Safe writing of any output: atomic replacement, fail-fast checks of the path and free space,
and files' identities (SHA-256, distinct inputs).

Every output goes through :func:`atomic_path`, so a file at its final name is always complete;
:func:`check_output` and :func:`check_space` fail before long work where a write could not succeed.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

import h5py

from fwi_attn.io.checked_json import dump_checked
from fwi_attn.io.hdf5 import DATA_HASH, seal, write_h5


class OutputError(ValueError):
    """An output path cannot be written (checked before any expensive work)."""


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
    with atomic_path(path) as tmp:
        tmp.write_text(dump_checked(obj))


def write_sealed_h5(path: str | os.PathLike, arrays: dict, attrs: dict, groups: tuple[str, ...] = ()) -> Path:
    """Write an HDF5 result atomically: ``arrays`` as datasets (their names may hold groups, e.g.
    ``"maps/gates.1"``), ``attrs`` on the root, the (possibly empty) ``groups`` present, and the
    checksums of :func:`fwi_attn.io.hdf5.seal` over both."""
    def build(f):
        for name in groups:
            f.create_group(name)
        for name, data in arrays.items():
            f.create_dataset(name, data=data)
        f.attrs.update(attrs)
        seal(f, arrays)

    with atomic_path(path, suffix=".h5.tmp") as tmp:
        write_h5(tmp, build)
    return Path(path)
