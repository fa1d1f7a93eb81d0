"""HDF5 shards (schema ``fwi-attn/1``): one file of ``n`` samples of one dataset split.

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
torch, deepwave), plus ``dataset``, ``split``, ``shard``, ``family``; and the checksums
``data_sha256`` / ``meta_sha256`` of :mod:`fwi_attn.io.hdf5`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from fwi_attn.io.files import atomic_path, check_space
from fwi_attn.io.hdf5 import DATA_HASH, META_HASH, ShardError, h5_attrs, seal, verify_data, verify_meta, write_h5

SCHEMA = "fwi-attn/1"
REQUIRED_ATTRS = ("schema", "dx", "dt", "nt", "freq", "seed", "config", "versions")


class DatasetError(ValueError):
    """A dataset folder is missing or inconsistent, or a sample holds NaN/inf."""


def shard_nbytes(n: int, n_shots: int, nt: int, n_receivers: int, nz: int, nx: int) -> int:
    """The size (bytes) of a shard of ``n`` samples: float32 gathers and velocity, plus the
    positions; attributes and HDF5's own metadata fall within :data:`SPACE_MARGIN`."""
    return 4 * n * (n_shots * nt * n_receivers + nz * nx) + 16 * (n_shots + n_receivers)


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


def open_shard(path: Path) -> h5py.File:
    if not path.exists():
        raise ShardError(f"{path}: no such shard (generate it with `fwi-attn generate`)")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise ShardError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {e}") from None


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
    with open_shard(path) as f:
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
