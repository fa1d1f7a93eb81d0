"""Training data: random access to the samples of a split, one chunk per sample, and the
normalisation constants computed from a train split.

:class:`ShardDataset` reads the files :mod:`fwi_attn.data.sources` lists (HDF5 shards or OpenFWI
``.npy`` pairs). It opens every file once per process, lazily, on the first sample it reads there
(h5py handles must not cross a ``fork``, so DataLoader workers open their own), and reads exactly
one chunk per sample: the raw bytes of the sample's chunk (shards are chunked one sample per
chunk, unfiltered), or one row of a memory-mapped ``.npy``. OpenFWI's loader instead re-reads a
whole file per sample, which is what made its epochs take hours.

It is a map-style dataset (``__len__``, ``__getitem__``) that torch's ``DataLoader`` takes as it
is; torch is imported only when a sample is turned into tensors, so listing, shapes, raw reads and
:func:`compute_stats` run without it. The normalisation itself is :mod:`fwi_attn.data.normalize`;
``stats.json`` is :mod:`fwi_attn.io.stats`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from fwi_attn.data.normalize import Normalizer, gain_log_transform
from fwi_attn.data.sources import Source, check_same_shape, find_sources, h5_source, open_npy
from fwi_attn.io.hdf5 import ShardError, verify_data
from fwi_attn.io.shard import DatasetError
from fwi_attn.io.stats import GATHER_TRANSFORM, STATS_SCHEMA

# Imported from here by modules written before the split (their new homes: normalize, sources, io.stats).


class _ChunkReader:
    """Reads sample ``j`` of an HDF5 dataset ``[n, ...]``, one chunk per sample.

    Shards chunk one sample per chunk, unfiltered: then the chunk's bytes are the sample and
    ``read_direct_chunk`` skips HDF5's selection machinery (several times faster for these
    sizes). Other layouts (a foreign or compressed file) fall back to a hyperslab read.
    Samples come back as float32 ``[...]``; the fast path's are read-only views.
    """

    def __init__(self, dset: h5py.Dataset):
        self.dset = dset
        self.shape = dset.shape[1:]
        self.fast = (dset.chunks == (1, *self.shape) and dset.dtype == np.dtype("=f4")
                     and dset.id.get_create_plist().get_nfilters() == 0)
        self.origin = (0,) * len(self.shape)

    def sample(self, j: int) -> np.ndarray:
        if self.fast:
            _, raw = self.dset.id.read_direct_chunk((j, *self.origin))
            return np.frombuffer(raw, dtype=np.float32).reshape(self.shape)
        out = np.empty(self.shape, dtype=np.float32)
        self.dset.read_direct(out, np.s_[j])
        return out

    def __getitem__(self, key):
        return self.dset[key]


# ----------------------------------------------------------------------------- dataset


class ShardDataset:
    """Random access to the samples of one split, normalised for the networks.

    Args:
        sources: a split folder, a list of shard paths, or :class:`fwi_attn.data.sources.Source` objects.
        normalizer: applied to every sample; None returns raw values.
        check_finite: refuse a sample with NaN/inf (one cheap pass over the sample).

    ``dataset[i]`` returns ``(x, y)``: gathers ``x`` float32 ``[shot, time, receiver]`` and
    velocity ``y`` float32 ``[1, nz, nx]``, normalised to [-1, 1] when a normaliser is given,
    else raw amplitudes and m/s.

    Raises (on access):
        ShardError: a chunk cannot be read (truncated/corrupt file), naming file and sample.
        DatasetError: a sample holds NaN/inf, naming the file, its index there and the dataset index.
    """

    def __init__(self, sources: str | os.PathLike | Sequence[str | os.PathLike | Source],
                 normalizer: Normalizer | None = None, check_finite: bool = True):
        if isinstance(sources, (str, os.PathLike)):
            sources = find_sources(sources)
        else:
            sources = [s if isinstance(s, Source) else h5_source(Path(s)) for s in sources]
            if not sources:
                raise DatasetError("a dataset needs at least one file")
            check_same_shape(sources)
        self.sources: list[Source] = list(sources)
        self.normalizer = normalizer
        self.check_finite = check_finite
        self._offsets = np.cumsum([0] + [s.n for s in self.sources])
        self._handles: dict[int, tuple] = {}
        self._pid = os.getpid()
        self._cache: list | None = None

    # -- shape --------------------------------------------------------------------------
    @property
    def sample_shape(self) -> tuple[int, int, int]:
        """One sample's gathers ``(shot, time, receiver)``."""
        return self.sources[0].sample_shape

    @property
    def grid(self) -> tuple[int, int]:
        """One sample's velocity grid ``(nz, nx)``."""
        return self.sources[0].grid

    def model_shape(self) -> dict[str, int]:
        """The ``create_model`` size arguments for this data: ``in_shots, nt, n_receivers, nz, nx``."""
        s, t, r = self.sample_shape
        return dict(in_shots=s, nt=t, n_receivers=r, nz=self.grid[0], nx=self.grid[1])

    @property
    def paths(self) -> list[str]:
        return [str(s.gathers) for s in self.sources]

    def __len__(self) -> int:
        return int(self._offsets[-1])

    # -- reading ------------------------------------------------------------------------
    def locate(self, index: int) -> tuple[int, int]:
        """Dataset index -> (source number, sample index within that file)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range for a dataset of {len(self)}")
        index %= len(self)
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return k, index - int(self._offsets[k])

    def _handle(self, k: int) -> tuple:
        """The open (gathers, velocity) arrays of source ``k`` in this process."""
        if os.getpid() != self._pid:
            # A forked DataLoader worker: never touch the parent's h5py handles.
            self._handles, self._pid = {}, os.getpid()
        h = self._handles.get(k)
        if h is None:
            src = self.sources[k]
            if src.kind == "h5":
                try:
                    f = h5py.File(src.gathers, "r")
                except OSError as e:
                    raise ShardError(f"{src.gathers}: not a readable HDF5 file (truncated or corrupt?): {e}") from None
                try:
                    verify_data(f, src.gathers)  # the data checksum, once per file per process
                except BaseException:
                    f.close()
                    raise
                h = (_ChunkReader(f["gathers"]), _ChunkReader(f["velocity"]), f)
            else:
                h = (open_npy(src.gathers), open_npy(src.velocity), None)
            self._handles[k] = h
        return h

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw sample ``index``: gathers float32 ``[shot, time, receiver]``, velocity float32
        ``[nz, nx]`` in m/s, each one chunk (or one memory-mapped row). The arrays may be
        read-only views of the chunk's bytes: copy before writing to them."""
        k, j = self.locate(index)
        src = self.sources[k]
        g_ds, v_ds, _ = self._handle(k)
        try:
            if src.kind == "h5":
                g, v = g_ds.sample(j), v_ds.sample(j)
            else:
                g = np.array(g_ds[j], dtype=np.float32)
                v = np.array(v_ds[j], dtype=np.float32).reshape(src.grid)
        except (OSError, RuntimeError, ValueError, TypeError) as e:
            raise ShardError(f"{src.name}: sample {j} cannot be read (truncated or corrupt?): {e}") from None
        if self.check_finite and not (np.isfinite(g).all() and np.isfinite(v).all()):
            what = "gathers" if not np.isfinite(g).all() else "velocity"
            raise DatasetError(f"{src.name}: sample {j} (dataset index {index % len(self)}) has NaN/inf "
                               f"values in its {what}")
        return g, v

    def __getitem__(self, index: int):
        """``(x, y)`` torch tensors of sample ``index`` (see the class docstring)."""
        if self._cache is not None and self._cache[index] is not None:
            return self._cache[index]
        g, v = self.read(index)
        if self.normalizer is not None:
            g = self.normalizer.gathers(g)
            v = self.normalizer.velocity(v).astype(np.float32, copy=False)
        elif not g.flags.writeable:  # a read-only view of a chunk's bytes
            g, v = g.copy(), v.copy()
        import torch  # only a network's input needs tensors

        sample = torch.from_numpy(g), torch.from_numpy(v).unsqueeze(0)
        if self._cache is not None:
            self._cache[index] = sample
        return sample

    def keep_in_memory(self) -> None:
        """From now on keep each sample's tensors in memory after its first read, so that later
        epochs skip the read and the normalisation (:func:`fwi_attn.resources.caches_samples`
        says when a split fits)."""
        if self._cache is None:
            self._cache = [None] * len(self)

    def nbytes(self) -> int:
        """Bytes of every sample's float32 gathers and velocity: what :meth:`keep_in_memory` holds at most."""
        return 4 * len(self) * (math.prod(self.sample_shape) + math.prod(self.grid))

    def velocities(self) -> np.ndarray:
        """Every sample's raw velocity, float32 ``[n, nz, nx]`` in m/s (velocity only, not gathers)."""
        out = np.empty((len(self), *self.grid), dtype=np.float32)
        for k, src in enumerate(self.sources):
            _, v_ds, _ = self._handle(k)
            a, b = int(self._offsets[k]), int(self._offsets[k + 1])
            try:
                out[a:b] = np.asarray(v_ds[()] if src.kind == "h5" else v_ds).reshape(b - a, *self.grid)
            except (OSError, RuntimeError, ValueError) as e:
                raise ShardError(f"{src.name}: velocity cannot be read (truncated or corrupt?): {e}") from None
        return out

    def close(self) -> None:
        """Close this process's open files (they reopen on the next read)."""
        if os.getpid() == self._pid:
            for _, _, f in self._handles.values():
                if f is not None:
                    f.close()
        self._handles = {}

    def __getstate__(self):
        # Pickled for spawn-started workers: handles are per process, never shipped.
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: h5py may be gone already
            pass


# ----------------------------------------------------------------------------- stats


def _blocks(src: Source, handle: tuple, block: int):
    """Yield ``(start, gathers, velocity)`` blocks of ``block`` samples of one source."""
    g_ds, v_ds, _ = handle
    for a in range(0, src.n, block):
        b = min(a + block, src.n)
        try:
            g = np.asarray(g_ds[a:b], dtype=np.float32)
            v = np.asarray(v_ds[a:b], dtype=np.float32).reshape(b - a, *src.grid)
        except (OSError, RuntimeError, ValueError) as e:
            raise ShardError(f"{src.name}: samples {a}..{b - 1} cannot be read (truncated or corrupt?): {e}") from None
        yield a, g, v


def _first_bad(arr: np.ndarray) -> int | None:
    bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
    return int(np.argmax(bad)) if bad.any() else None


def compute_stats(folder: str | os.PathLike | Sequence, vmin: float, vmax: float, *, gain_power: float,
                  gain_scale: float, dataset: str = "", block: int = 32, progress: bool = False) -> dict:
    """Normalisation constants and the mean velocity model of one (train) split folder.

    Reads ``block`` samples at a time, so memory stays bounded for large splits.

    Args:
        folder: the train split: its folder, or its files (:func:`fwi_attn.data.sources.split_sources`);
            never val or test, whose data must stay unseen.
        vmin, vmax: the physical velocity bounds (m/s) that map to -1 and +1.
        gain_power, gain_scale: the time gain of :func:`fwi_attn.data.normalize.gain_log_transform`
            (``normalize.gain_power`` / ``gain_scale``; 0 and 1 give OpenFWI's plain log).

    Returns:
        The ``stats.json`` dictionary (:mod:`fwi_attn.io.stats`).

    Raises:
        DatasetError: NaN/inf in a sample (naming file and sample), or velocities outside
            [vmin, vmax].
    """
    ds = ShardDataset(folder, check_finite=False)
    g_min, g_max = math.inf, -math.inf
    t_min, t_max = math.inf, -math.inf
    v_min, v_max = math.inf, -math.inf
    v_sum = np.zeros(ds.grid, dtype=np.float64)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(ds), unit="sample", desc="stats", leave=False)
    for k, src in enumerate(ds.sources):
        for a, g, v in _blocks(src, ds._handle(k), block):
            for name, arr in (("gathers", g), ("velocity", v)):
                j = _first_bad(arr)
                if j is not None:
                    raise DatasetError(f"{src.name}: sample {a + j} has NaN/inf values in its {name}")
            g_min, g_max = min(g_min, float(g.min())), max(g_max, float(g.max()))
            t = gain_log_transform(g, gain_power, gain_scale)
            t_min, t_max = min(t_min, float(t.min())), max(t_max, float(t.max()))
            v_min, v_max = min(v_min, float(v.min())), max(v_max, float(v.max()))
            v_sum += v.sum(axis=0, dtype=np.float64)
            if bar is not None:
                bar.update(len(g))
    if bar is not None:
        bar.close()
    ds.close()
    # A little slack for float32 rounding of velocities written at the bounds.
    tol = 1e-4 * (vmax - vmin)
    if v_min < vmin - tol or v_max > vmax + tol:
        raise DatasetError(f"{ds.sources[0].gathers.parent}: train velocities span [{v_min:g}, {v_max:g}] m/s, outside "
                           f"geology.vmin/vmax [{vmin:g}, {vmax:g}]; widen those bounds in the config")
    mean = v_sum / len(ds)
    return {
        "schema": STATS_SCHEMA,
        "dataset": dataset,
        "split": "train",
        "files": ds.paths,
        "n_samples": len(ds),
        "shape": ds.model_shape(),
        "gathers": {"transform": GATHER_TRANSFORM, "gain_power": float(gain_power),
                    "gain_scale": float(gain_scale), "raw_min": g_min, "raw_max": g_max,
                    "min": t_min, "max": t_max},
        "velocity": {"vmin": float(vmin), "vmax": float(vmax), "data_min": v_min, "data_max": v_max,
                     "data_mean": float(mean.mean())},
        "mean_velocity": np.round(mean, 3).tolist(),
    }


def check_survey(cfg, data: ShardDataset) -> None:
    """Refuse data whose shape disagrees with the config's survey (stale data of another config)."""
    s = cfg.survey
    expected = dict(in_shots=s.n_shots, nt=s.nt, n_receivers=s.n_receivers, nz=s.nz, nx=s.nx)
    if data.model_shape() != expected:
        diff = ", ".join(f"{k} {data.model_shape()[k]} (config {expected[k]})"
                         for k in expected if expected[k] != data.model_shape()[k])
        raise DatasetError(f"{data.sources[0].name} does not match the config's survey: {diff}; regenerate the "
                           f"data with this config, or use the config the data were made with")
