"""The files of a split: HDF5 shards or OpenFWI ``.npy`` folders, listed and checked against a config.

A split lives in one folder, ``<data_dir>/<dataset>/<split>/``, holding either

* HDF5 shards (``shard-NNNN.h5``, schema ``fwi-attn/1``, see :mod:`fwi_attn.io.shard`), or
* an OpenFWI-style set of ``.npy`` pairs: ``data1.npy`` / ``model1.npy`` (or OpenFWI's
  ``seis*.npy`` / ``vel*.npy`` naming), either side by side or in ``data/`` and ``model/``
  sub-folders. Gathers are ``[n, shot, time, receiver]`` (OpenFWI: ``[n, 5, 1000, 70]``) and
  velocity ``[n, 1, nz, nx]`` or ``[n, nz, nx]`` in m/s. Files pair by the text after the prefix.

Files are listed in natural order (``shard-2`` before ``shard-10``); a dataset's sample index
runs through them in that order.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwi_attn.config import recorded_differences
from fwi_attn.io.shard import DatasetError, ShardError, read_shard
from fwi_attn.layout import shard_sizes, split_dir, split_shards

#: OpenFWI's file-name prefixes: (gathers, velocity).
NPY_PREFIXES = (("data", "model"), ("seis", "vel"))


def natural_key(path: Path):
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


def h5_source(path: Path) -> Source:
    shard = read_shard(path, load=False)  # schema and shape checks, names the file
    return Source(path, None, shard.n, (shard.n_shots, shard.nt, shard.n_receivers), (shard.nz, shard.nx))


def open_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ShardError(f"{path}: not a readable .npy file (truncated or corrupt?): {e}") from None


def npy_source(data: Path, model: Path) -> Source:
    g, v = open_npy(data), open_npy(model)
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


def npy_pairs(folder: Path) -> list[tuple[Path, Path]]:
    for gp, vp in NPY_PREFIXES:
        for gdir, vdir in ((folder, folder), (folder / "data", folder / "model")):
            data = sorted(gdir.glob(f"{gp}*.npy"), key=natural_key)
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
    shards = sorted(folder.glob("*.h5"), key=natural_key)
    if shards:
        sources = [h5_source(p) for p in shards]
    else:
        pairs = npy_pairs(folder)
        if not pairs:
            raise DatasetError(f"{folder}: no *.h5 shards and no OpenFWI data*.npy / model*.npy pairs")
        sources = [npy_source(d, m) for d, m in pairs]
    check_same_shape(sources)
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
    present = sorted(folder.glob("*.h5"), key=natural_key) if folder.is_dir() else []
    if not present and folder.is_dir() and npy_pairs(folder):
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


def check_same_shape(sources: Sequence[Source]) -> None:
    """Every file's samples must have the first file's shape (naming both files if not)."""
    first = sources[0]
    for s in sources[1:]:
        if (s.sample_shape, s.grid) != (first.sample_shape, first.grid):
            raise DatasetError(
                f"shape mismatch between data files: {first.name} has gathers {list(first.sample_shape)} -> "
                f"grid {list(first.grid)} per sample, but {s.name} has {list(s.sample_shape)} -> {list(s.grid)}")
