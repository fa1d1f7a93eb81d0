"""Training data: a torch Dataset over HDF5 shards or OpenFWI ``.npy`` folders, and normalisation.

Sources
-------
A split lives in one folder, ``<data_dir>/<dataset>/<split>/``, holding either

* HDF5 shards (``shard-NNNN.h5``, schema ``fwi-attn/1``, see :mod:`fwi_attn.data.store`), or
* an OpenFWI-style set of ``.npy`` pairs: ``data1.npy`` / ``model1.npy`` (or OpenFWI's
  ``seis*.npy`` / ``vel*.npy`` naming), either side by side or in ``data/`` and ``model/``
  sub-folders. Gathers are ``[n, shot, time, receiver]`` (OpenFWI: ``[n, 5, 1000, 70]``) and
  velocity ``[n, 1, nz, nx]`` or ``[n, nz, nx]`` in m/s. Files pair by the text after the prefix.

Files are listed in natural order (``shard-2`` before ``shard-10``); the dataset's sample
index runs through them in that order.

Loading
-------
:class:`ShardDataset` opens every file once per process, lazily, on the first sample it
reads there (h5py handles must not cross a ``fork``, so DataLoader workers open their own),
and reads exactly one chunk per sample: the raw bytes of the sample's chunk (shards are
chunked one sample per chunk, unfiltered), or one row of a memory-mapped ``.npy``. OpenFWI's loader
instead re-reads a whole file per sample, which is what made its epochs take hours.

Normalisation
-------------
* gathers: ``g = sign(x) * log1p(k * (t/T)**p * |x|)``, then min-max to [-1, 1] with the min and
  max of ``g`` over the **train split only**. ``(t/T)**p`` is a time-power gain (``t = (i + 1) dt``
  for time sample ``i``, ``T = nt dt`` the record length; ``p = normalize.gain_power``,
  ``k = normalize.gain_scale``). It makes up for geometric spreading: without it the direct wave
  is ~100x the reflections from the bottom of the model, which then barely move the network's
  input. ``p = 0, k = 1`` is OpenFWI's plain ``sign(x) * log1p(|x|)``;
* velocity: min-max to [-1, 1] with the physical bounds ``geology.vmin`` / ``geology.vmax``.

``fwi-attn stats`` writes these constants to ``<data_dir>/<dataset>/stats.json``::

    {"schema": "fwi-attn-stats/1", "dataset": "salt", "split": "train",
     "files": [".../train/shard-0000.h5", ...], "n_samples": 320,
     "shape": {"in_shots": 5, "nt": 320, "n_receivers": 64, "nz": 64, "nx": 64},
     "gathers": {"transform": "sign(x)*log1p(k*(t/T)**p*|x|)", "gain_power": 2.0,
                 "gain_scale": 10.0, "raw_min": -46.7, "raw_max": 24.2, "min": -4.09, "max": 3.49},
     "velocity": {"vmin": 1500.0, "vmax": 4500.0, "data_min": 1500.0, "data_max": 4499.5,
                  "data_mean": 2952.2},
     "mean_velocity": [[...nx values...], ...nz rows]}

``gathers.min``/``max`` are of the transformed train gathers (a file without ``gain_power`` and
``gain_scale`` means OpenFWI's transform, ``p = 0, k = 1``); ``mean_velocity`` is the
train split's mean velocity model ``[nz][nx]`` in m/s, the mean-model baseline of
``fwi-attn evaluate --baseline mean``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from fwi_attn.config import recorded_differences
from fwi_attn.layout import shard_sizes, split_dir, split_shards
from fwi_attn.data.store import ShardError, read_shard, verify_data
from fwi_attn.io.checked_json import verify_checked

STATS_SCHEMA = "fwi-attn-stats/1"
GATHER_TRANSFORM = "sign(x)*log1p(k*(t/T)**p*|x|)"
#: OpenFWI's file-name prefixes: (gathers, velocity).
NPY_PREFIXES = (("data", "model"), ("seis", "vel"))


class DatasetError(ValueError):
    """A dataset folder is missing or inconsistent, or a sample holds NaN/inf."""


class StatsError(DatasetError):
    """The normalisation file is missing, unreadable or does not fit the data."""


# ----------------------------------------------------------------------------- normalisation


def log_transform(x):
    """``sign(x) * log1p(|x|)`` for numpy arrays or torch tensors (OpenFWI's ``LogTransform``, k=1)."""
    if isinstance(x, torch.Tensor):
        return torch.log1p(x.abs()).copysign(x)
    x = np.asarray(x)
    return np.copysign(np.log1p(np.abs(x)), x)


def inverse_log_transform(y):
    """Inverse of :func:`log_transform`: ``sign(y) * expm1(|y|)``."""
    if isinstance(y, torch.Tensor):
        return torch.expm1(y.abs()).copysign(y)
    y = np.asarray(y)
    return np.copysign(np.expm1(np.abs(y)), y)


def time_gain(nt: int, power: float, scale: float = 1.0) -> np.ndarray:
    """``scale * (t/T)**power`` per time sample, float32 ``[nt, 1]`` (broadcasts over receivers).

    ``t = (i + 1) dt`` for sample ``i`` and ``T = nt dt``, so the gain is dimensionless, reaches
    ``scale`` at the end of the record and is never zero (the transform stays invertible).
    """
    t = np.arange(1, nt + 1, dtype=np.float64) / nt
    return (scale * t**power).astype(np.float32)[:, None]


def gain_log_transform(x: np.ndarray, power: float, scale: float) -> np.ndarray:
    """``sign(x) * log1p(scale * (t/T)**power * |x|)`` as float32, time on axis -2.

    Args:
        x: gathers ``[..., nt, n_receivers]`` (any leading axes: shots, samples).
    """
    y = np.abs(x, dtype=np.float32)
    if power != 0 or scale != 1:
        y *= time_gain(y.shape[-2], power, scale)
    np.log1p(y, out=y)
    np.copysign(y, x, out=y)
    return y


@dataclass(frozen=True)
class Normalizer:
    """The network's normalisation, constants from a train split (see module docstring).

    Attributes:
        gathers_min, gathers_max: min and max of :func:`gain_log_transform` of the train gathers.
        vmin, vmax: physical velocity bounds in m/s (``geology.vmin``/``vmax``).
        gain_power, gain_scale: the time gain ``gain_scale * (t/T)**gain_power`` (defaults: none,
            OpenFWI's transform).
    """

    gathers_min: float
    gathers_max: float
    vmin: float
    vmax: float
    gain_power: float = 0.0
    gain_scale: float = 1.0

    def __post_init__(self):
        if not self.gathers_max > self.gathers_min:
            raise StatsError(f"gathers max ({self.gathers_max}) must exceed min ({self.gathers_min}): "
                             f"are the train gathers all zero?")
        if not self.vmax > self.vmin:
            raise StatsError(f"vmax ({self.vmax}) must exceed vmin ({self.vmin})")

    @classmethod
    def from_stats(cls, stats: dict) -> Normalizer:
        g = stats["gathers"]
        return cls(float(g["min"]), float(g["max"]), float(stats["velocity"]["vmin"]),
                   float(stats["velocity"]["vmax"]), float(g.get("gain_power", 0.0)),
                   float(g.get("gain_scale", 1.0)))

    def to_dict(self) -> dict:
        """Plain floats, as stored in checkpoints; :meth:`from_dict` reads them back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Normalizer:
        """From :meth:`to_dict` output (an older dict without the gain keys means no gain)."""
        return cls(**{f.name: float(d[f.name]) for f in dataclasses.fields(cls) if f.name in d})

    def gathers(self, x: np.ndarray) -> np.ndarray:
        """Raw gathers ``[..., nt, n_receivers]`` -> float32 in [-1, 1] for train-split values.

        Works in place on a float32 copy: this runs once per sample in the loader.
        """
        y = gain_log_transform(x, self.gain_power, self.gain_scale)
        scale = 2.0 / (self.gathers_max - self.gathers_min)
        y *= np.float32(scale)
        y -= np.float32(self.gathers_min * scale + 1.0)
        return y

    def gathers_inverse(self, y):
        """Normalised gathers -> raw amplitudes (numpy or torch)."""
        g = (y + 1.0) * (0.5 * (self.gathers_max - self.gathers_min)) + self.gathers_min
        x = inverse_log_transform(g)
        gain = time_gain(x.shape[-2], self.gain_power, self.gain_scale)
        return x / (torch.from_numpy(gain).to(x) if isinstance(x, torch.Tensor) else gain)

    @classmethod
    def for_velocity(cls, vmin: float, vmax: float) -> Normalizer:
        """A normaliser for velocity only (metrics, figures) with bounds ``vmin``/``vmax`` in m/s.

        Its gathers constants are placeholders (min-max of [-1, 1]): it must never normalise a
        network's input, which needs the train split's constants (:meth:`from_stats`).
        """
        return cls(-1.0, 1.0, float(vmin), float(vmax))

    def velocity(self, v):
        """Velocity in m/s -> [-1, 1] (numpy or torch); vmin -> -1, vmax -> +1."""
        return (v - self.vmin) * (2.0 / (self.vmax - self.vmin)) - 1.0

    @staticmethod
    def unit_interval(y):
        """Normalised velocity [-1, 1] -> [0, 1] (numpy or torch): the scale of SSIM and PSNR.

        ``unit_interval(velocity(v))`` is ``(v - vmin) / (vmax - vmin)``, computed through the
        [-1, 1] value so that both scales of one model agree to the last bit.
        """
        return (y + 1.0) / 2.0

    def velocity_inverse(self, y, clip: bool = False):
        """[-1, 1] -> m/s (numpy or torch). ``clip`` first limits ``y`` to [-1, 1], i.e. the
        result to [vmin, vmax] (the UNet's head is linear and may overshoot slightly)."""
        if clip:
            y = y.clamp(-1.0, 1.0) if isinstance(y, torch.Tensor) else np.clip(y, -1.0, 1.0)
        return (y + 1.0) * (0.5 * (self.vmax - self.vmin)) + self.vmin


# ----------------------------------------------------------------------------- sources


def _natural_key(path: Path):
    """Sort ``shard-2`` before ``shard-10`` and ``data2`` before ``data10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


@dataclass(frozen=True)
class Source:
    """One file of samples: an HDF5 shard, or an OpenFWI ``.npy`` pair.

    Attributes:
        gathers: the shard, or the ``data*.npy`` file.
        velocity: the ``model*.npy`` file; None for a shard.
        n: number of samples.
        sample_shape: one sample's gathers ``(shot, time, receiver)``.
        grid: one sample's velocity ``(nz, nx)``.
    """

    gathers: Path
    velocity: Path | None
    n: int
    sample_shape: tuple[int, int, int]
    grid: tuple[int, int]

    @property
    def kind(self) -> str:
        return "h5" if self.velocity is None else "npy"

    @property
    def name(self) -> str:
        return str(self.gathers) if self.velocity is None else f"{self.gathers} + {self.velocity.name}"


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


def _h5_source(path: Path) -> Source:
    shard = read_shard(path, load=False)  # schema and shape checks, names the file
    return Source(path, None, shard.n, (shard.n_shots, shard.nt, shard.n_receivers), (shard.nz, shard.nx))


def _open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ShardError(f"{path}: not a readable .npy file (truncated or corrupt?): {e}") from None


def _npy_source(data: Path, model: Path) -> Source:
    g, v = _open_npy(data), _open_npy(model)
    if g.ndim != 4:
        raise ShardError(f"{data}: gathers must be [n, shot, time, receiver], got shape {list(g.shape)}")
    if v.ndim == 4 and v.shape[1] == 1:
        v_grid = v.shape[2:]
    elif v.ndim == 3:
        v_grid = v.shape[1:]
    else:
        raise ShardError(f"{model}: velocity must be [n, 1, nz, nx] or [n, nz, nx], got shape {list(v.shape)}")
    if g.shape[0] != v.shape[0]:
        raise ShardError(f"{data} holds {g.shape[0]} samples but {model} holds {v.shape[0]}")
    return Source(data, model, g.shape[0], tuple(g.shape[1:]), tuple(v_grid))


def _npy_pairs(folder: Path) -> list[tuple[Path, Path]]:
    for gp, vp in NPY_PREFIXES:
        for gdir, vdir in ((folder, folder), (folder / "data", folder / "model")):
            data = sorted(gdir.glob(f"{gp}*.npy"), key=_natural_key)
            if not data:
                continue
            pairs = []
            for d in data:
                m = vdir / f"{vp}{d.name[len(gp):]}"
                if not m.exists():
                    raise DatasetError(f"{d}: no matching velocity file {m} (OpenFWI pairs are "
                                       f"{gp}<k>.npy / {vp}<k>.npy)")
                pairs.append((d, m))
            return pairs
    return []


def find_sources(folder: str | os.PathLike) -> list[Source]:
    """The files of one split folder, in order, each checked for shape consistency.

    Raises:
        DatasetError: no such folder, no data in it, or files whose sample shapes differ
            (naming both files).
        ShardError: a file that is not a readable shard / ``.npy`` (naming it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such data folder (generate the split with `fwi-attn generate`, "
                           f"or put OpenFWI data*.npy / model*.npy files there)")
    shards = sorted(folder.glob("*.h5"), key=_natural_key)
    if shards:
        sources = [_h5_source(p) for p in shards]
    else:
        pairs = _npy_pairs(folder)
        if not pairs:
            raise DatasetError(f"{folder}: no *.h5 shards and no OpenFWI data*.npy / model*.npy pairs")
        sources = [_npy_source(d, m) for d, m in pairs]
    _check_same_shape(sources)
    return sources


def split_sources(cfg, split: str, dataset: str | None = None) -> list[Source]:
    """The files of one split of a config's dataset: exactly the shards the config defines.

    A shard left behind by a larger ``samples.<split>``, or copied into the folder, would
    silently enlarge the split, so any other ``*.h5`` in the folder is an error, and so is a
    shard whose recorded dataset, split, index, seed, size or generating config sections
    (survey, geology, dataset) differ from this config's. A folder of OpenFWI ``.npy`` pairs
    (no shards at all) is taken as it is.

    Raises:
        DatasetError: naming the files at fault and what to do.
    """
    name = dataset or cfg.study.dataset
    if name not in cfg.datasets:
        raise DatasetError(f"dataset '{name}' is not in the config (defined: {', '.join(cfg.datasets)})")
    folder = split_dir(cfg, name, split)
    expected = split_shards(cfg, split, name)
    present = sorted(folder.glob("*.h5"), key=_natural_key) if folder.is_dir() else []
    if not present and folder.is_dir() and _npy_pairs(folder):
        return find_sources(folder)
    extra = [p for p in present if p not in expected]
    if extra:
        names = ", ".join(p.name for p in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise DatasetError(
            f"{folder}: {len(extra)} file(s) not in the {split} split the config defines "
            f"(shard-0000 .. shard-{len(expected) - 1:04d}): {names}; remove them (left from a larger "
            f"datasets.{name}.samples.{split}, or copied in)")
    missing = [p for p in expected if not p.is_file()]
    if missing:
        raise DatasetError(f"{folder}: missing {len(missing)} of the split's {len(expected)} shards, first "
                           f"{missing[0].name}; generate them with `fwi-attn generate` (or the workflow)")
    ds = cfg.datasets[name]
    sizes = shard_sizes(ds.samples[split], ds.shard_size)
    sources = []
    for i, path in enumerate(expected):
        shard = read_shard(path, load=False)
        a = shard.attrs
        recorded = {"dataset": a.get("dataset"), "split": a.get("split"), "shard": a.get("shard"),
                    "seed": a.get("seed"), "samples": shard.n}
        wanted = {"dataset": name, "split": split, "shard": i, "seed": ds.seed, "samples": sizes[i]}
        diff = [f"{k} {recorded[k]!r} (config: {wanted[k]!r})" for k in wanted if recorded[k] != wanted[k]]
        diff += recorded_differences(shard.config, cfg, ("survey", "geology", f"datasets.{name}"))
        if diff:
            raise DatasetError(f"{path} was not generated for this config's {name}/{split} split: "
                               f"{'; '.join(diff)}; regenerate it with this config (or remove it)")
        sources.append(Source(path, None, shard.n, (shard.n_shots, shard.nt, shard.n_receivers),
                              (shard.nz, shard.nx)))
    return sources


def test_set_sources(cfg, name: str, folder: str | os.PathLike) -> list[Source]:
    """The files of a named test set (``fwi-attn testset``, or OpenFWI ``.npy`` pairs) in ``folder``.

    Every shard must record the set's ``name`` as its dataset, the ``test`` split, and the
    survey and velocity bounds of ``cfg`` (gathers of another acquisition would be scored as if
    they were this study's); a folder of OpenFWI ``.npy`` pairs carries no record and is taken as
    it is (its shapes are checked against the survey by the caller).

    Raises:
        DatasetError: naming the shard at fault and what to do.
    """
    sources = find_sources(folder)
    for src in sources:
        if src.kind != "h5":
            continue
        shard = read_shard(src.gathers, load=False)
        a = shard.attrs
        diff = [f"{k} {a.get(k)!r} (wanted {v!r})" for k, v in (("dataset", name), ("split", "test"))
                if a.get(k) != v]
        diff += recorded_differences(shard.config, cfg, ("survey", "geology.vmin", "geology.vmax"))
        if diff:
            raise DatasetError(f"{src.gathers} is not test set {name!r} on this config's survey: {'; '.join(diff)}; "
                               f"rebuild it with `fwi-attn testset --config C --name {name} --out {folder}`")
    return sources


def _check_same_shape(sources: Sequence[Source]) -> None:
    """Every file's samples must have the first file's shape (naming both files if not)."""
    first = sources[0]
    for s in sources[1:]:
        if (s.sample_shape, s.grid) != (first.sample_shape, first.grid):
            raise DatasetError(
                f"shape mismatch between data files: {first.name} has gathers {list(first.sample_shape)} -> "
                f"grid {list(first.grid)} per sample, but {s.name} has {list(s.sample_shape)} -> {list(s.grid)}")


# ----------------------------------------------------------------------------- dataset


class ShardDataset(Dataset):
    """Random access to the samples of one split, normalised for the networks.

    Args:
        sources: a split folder, a list of shard paths, or :class:`Source` objects.
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
            sources = [s if isinstance(s, Source) else _h5_source(Path(s)) for s in sources]
            if not sources:
                raise DatasetError("a dataset needs at least one file")
            _check_same_shape(sources)
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
                h = (_open_npy(src.gathers), _open_npy(src.velocity), None)
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

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cache is not None and self._cache[index] is not None:
            return self._cache[index]
        g, v = self.read(index)
        if self.normalizer is not None:
            g = self.normalizer.gathers(g)
            v = self.normalizer.velocity(v).astype(np.float32, copy=False)
        elif not g.flags.writeable:  # a read-only view of a chunk's bytes
            g, v = g.copy(), v.copy()
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
        folder: the train split: its folder, or its files (:func:`split_sources`); never
            val or test, whose data must stay unseen.
        vmin, vmax: the physical velocity bounds (m/s) that map to -1 and +1.
        gain_power, gain_scale: the time gain of :func:`gain_log_transform`
            (``normalize.gain_power`` / ``gain_scale``; 0 and 1 give OpenFWI's plain log).

    Returns:
        The ``stats.json`` dictionary (see the module docstring).

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


def load_stats(path: str | os.PathLike) -> dict:
    """Read and check a ``stats.json``.

    Raises:
        StatsError: missing (with the command that makes it), unreadable, edited since written (its
            ``sha256``), or of another schema.
    """
    path = Path(path)
    if not path.is_file():
        raise StatsError(f"normalisation file {path} does not exist: run "
                         f"`fwi-attn stats --config C --dataset D --out {path}` first")
    try:
        stats = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise StatsError(f"{path}: not a readable stats file: {e}") from None
    stats = verify_checked(stats, path, f"`fwi-attn stats --config C --dataset D --out {path}`", StatsError)
    if not isinstance(stats, dict) or stats.get("schema") != STATS_SCHEMA:
        raise StatsError(f"{path}: schema {stats.get('schema') if isinstance(stats, dict) else None!r}, "
                         f"expected {STATS_SCHEMA!r}; rerun `fwi-attn stats`")
    missing = [k for k in ("gathers", "velocity", "shape", "mean_velocity") if k not in stats]
    if missing:
        raise StatsError(f"{path}: missing {', '.join(missing)}; rerun `fwi-attn stats`")
    return stats


def check_stats(stats: dict, data: ShardDataset, stats_path: str | os.PathLike = "stats.json") -> None:
    """Refuse stats computed for data of another shape."""
    if dict(stats["shape"]) != data.model_shape():
        raise StatsError(f"{stats_path} was computed for data of shape {stats['shape']}, but "
                         f"{data.sources[0].name} has {data.model_shape()}; rerun `fwi-attn stats`")


def check_survey(cfg, data: ShardDataset) -> None:
    """Refuse data whose shape disagrees with the config's survey (stale data of another config)."""
    s = cfg.survey
    expected = dict(in_shots=s.n_shots, nt=s.nt, n_receivers=s.n_receivers, nz=s.nz, nx=s.nx)
    if data.model_shape() != expected:
        diff = ", ".join(f"{k} {data.model_shape()[k]} (config {expected[k]})"
                         for k in expected if expected[k] != data.model_shape()[k])
        raise DatasetError(f"{data.sources[0].name} does not match the config's survey: {diff}; regenerate the "
                           f"data with this config, or use the config the data were made with")


def mean_velocity(stats: dict) -> np.ndarray:
    """The train split's mean velocity model, float32 ``[nz, nx]`` in m/s."""
    return np.asarray(stats["mean_velocity"], dtype=np.float32)


def open_split(cfg, split: str, stats: dict | None, dataset: str | None = None) -> ShardDataset:
    """The normalised dataset of one split of a config's dataset (raw when ``stats`` is None)."""
    data = ShardDataset(split_sources(cfg, split, dataset), Normalizer.from_stats(stats) if stats else None)
    if stats is not None:
        check_stats(stats, data)
    return data
