"""How far apart are two sets of velocity models? ``fwi-attn compare-sets A B``.

A network scored on a test set it was not trained for meets other geology; these numbers say
how much other. Each set is a folder of fwi-attn shards (a study split, a ``fwi-attn testset``
set), a folder of OpenFWI ``data*.npy`` / ``model*.npy`` pairs, one shard, or velocity-model
files (those of :func:`fwi_attn.data.geology.read_velocity_file`, or a folder of them).
Statistics, each of set A, of set B and their distance (``scipy.stats.wasserstein_distance``,
the first Wasserstein or earth mover's distance between the two empirical distributions, in
the statistic's unit):

* ``velocity``: every cell's velocity, m/s;
* ``depth_profile``: the mean velocity of each depth row; the distance is the mean absolute
  difference of the two profiles over the depths both sets cover (m/s), and ``max_abs`` its maximum;
* ``salt_fraction``: per model, the fraction of cells above the salt threshold;
* ``salt_top_depth``: per model with salt, the depth of its shallowest salt cell (m; cells when
  the set's cell size is unknown); ``with_salt`` is the fraction of models that have salt;
* ``body_area``: the area of every salt body (4-connected, ``scipy.ndimage.label``), m^2 (cells);
* ``bodies_per_model``: the number of salt bodies in each model.

A statistic with no values in one set (no salt at all) has distance None. ``compare_sets.json``
holds them all (and each set's description), ``compare_sets.png`` draws the distributions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA = "fwi-attn-compare-sets/1"
STATISTICS = ("velocity", "depth_profile", "salt_fraction", "salt_top_depth", "body_area", "bodies_per_model")


class CompareSetsError(ValueError):
    """A set cannot be read, or the two sets cannot be compared."""


@dataclass
class ModelSet:
    """A set's velocity models ``[n, nz, nx]`` (m/s), its cell size (m, None if unknown) and origin."""

    name: str
    velocity: np.ndarray
    dx: float | None
    source: str
    kind: str  # "shards" or "models"

    def describe(self) -> dict:
        n, nz, nx = self.velocity.shape
        return {"name": self.name, "source": self.source, "kind": self.kind, "n_models": n, "nz": nz, "nx": nx,
                "dx": self.dx}


def _is_shard(path: Path) -> bool:
    import h5py

    from fwi_attn.io.shard import SCHEMA as SHARD_SCHEMA

    if path.suffix.lower() not in (".h5", ".hdf5"):
        return False
    try:
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema")
    except OSError:
        return False
    return (schema.decode() if isinstance(schema, bytes) else schema) == SHARD_SCHEMA


def _is_test_set_shard(path: Path) -> bool:
    """Whether a shard was written by ``fwi-attn testset`` (it records its ``provenance``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "provenance" in f.attrs
    except OSError:
        return False


def load_model_set(path: str | os.PathLike, *, name: str | None = None, dx: float | None = None,
                   variable: str | None = None) -> ModelSet:
    """Read one set's velocity models.

    Args:
        path: a folder of shards or of OpenFWI ``.npy`` pairs, a shard, a model file or a folder
            of model files.
        dx: the cell size (m) of model files (shards record their own; a ``dx`` given for shards
            must agree with it).
        variable: HDF5 dataset / MATLAB variable of model files.

    Raises:
        CompareSetsError: nothing readable there, or models of different grids in one set.
    """
    from fwi_attn.data.dataset import ShardDataset
    from fwi_attn.data.sources import find_sources, npy_pairs
    from fwi_attn.data.testset import model_files
    from fwi_attn.data.velocity_files import read_velocity_file
    from fwi_attn.io.shard import read_shard

    path = Path(path)
    name = name or path.stem
    if not path.exists():
        raise CompareSetsError(f"{path}: no such set (a folder of shards, a shard or model files)")
    shards = sorted(path.glob("*.h5")) if path.is_dir() else ([path] if _is_shard(path) else [])
    shard_set = bool(shards) and all(_is_shard(p) for p in shards)
    openfwi = path.is_dir() and not shards and bool(npy_pairs(path))
    if shard_set and path.is_dir() and _is_test_set_shard(shards[0]):
        from fwi_attn.data.testset import check_complete

        check_complete(path)  # a `fwi-attn testset` folder: only a finished one
    if shard_set or openfwi:
        data = ShardDataset(find_sources(path) if path.is_dir() else [path], check_finite=False)
        velocity = data.velocities()
        recorded = None
        if shard_set:
            recorded = {float(read_shard(s.gathers, load=False).attrs["dx"]) for s in data.sources}
            if len(recorded) > 1:
                raise CompareSetsError(f"{path}: shards of different cell sizes {sorted(recorded)} m in one set")
            recorded = recorded.pop()
            if dx is not None and dx != recorded:
                raise CompareSetsError(f"{path}: shards record dx = {recorded:g} m but {dx:g} m was given")
        data.close()
        return ModelSet(name, velocity, recorded if recorded is not None else dx, str(path), "shards")
    stacks = []
    for f in model_files([path]):
        try:
            v = read_velocity_file(f, variable).astype(np.float32)
        except FileNotFoundError as e:
            raise CompareSetsError(str(e)) from None
        if stacks and v.shape[1:] != stacks[0][1].shape[1:]:
            raise CompareSetsError(f"{f}: models of {v.shape[1]} x {v.shape[2]} cells, but {stacks[0][0]} has "
                                   f"{stacks[0][1].shape[1]} x {stacks[0][1].shape[2]}; one set compares models of "
                                   f"one grid (cut them with `fwi-attn testset` first)")
        stacks.append((f, v))
    return ModelSet(name, np.concatenate([v for _, v in stacks]), dx, str(path), "models")


# ----------------------------------------------------------------------------- statistics


def set_statistics(s: ModelSet, salt_threshold: float) -> dict:
    """The per-model and per-cell samples of every statistic of one set (numpy arrays)."""
    from scipy import ndimage

    v = s.velocity
    step = s.dx if s.dx is not None else 1.0
    salt = v > salt_threshold
    tops, areas, counts = [], [], []
    for mask in salt:
        rows = np.nonzero(mask.any(axis=1))[0]
        if len(rows):
            tops.append(rows[0] * step)
        labels, k = ndimage.label(mask)  # 4-connected: bodies touching at a corner are two
        counts.append(k)
        if k:
            areas += (np.bincount(labels.ravel())[1:] * step**2).tolist()
    return {"velocity": v.ravel(), "depth_profile": v.mean(axis=(0, 2), dtype=np.float64),
            "depth": np.arange(v.shape[1]) * step, "salt_fraction": salt.mean(axis=(1, 2)),
            "salt_top_depth": np.asarray(tops, dtype=np.float64), "body_area": np.asarray(areas, dtype=np.float64),
            "bodies_per_model": np.asarray(counts, dtype=np.float64)}


def _summary(x: np.ndarray) -> dict:
    if not len(x):
        return {"n": 0, "mean": None, "std": None, "median": None}
    return {"n": int(len(x)), "mean": float(np.mean(x)), "std": float(np.std(x)), "median": float(np.median(x))}


def compare_sets(a: ModelSet, b: ModelSet, salt_threshold: float) -> dict:
    """Every statistic of sets ``a`` and ``b`` and their distance (see the module docstring)."""
    from scipy.stats import wasserstein_distance

    if (a.dx is None) != (b.dx is None):
        known = a if a.dx is not None else b
        raise CompareSetsError(f"set {known.name} has cells of {known.dx:g} m but the other set's cell size is "
                               f"unknown; give it with --dx")
    sa, sb = set_statistics(a, salt_threshold), set_statistics(b, salt_threshold)
    out = {}
    for key in ("velocity", "salt_fraction", "salt_top_depth", "body_area", "bodies_per_model"):
        x, y = sa[key], sb[key]
        distance = float(wasserstein_distance(x, y)) if len(x) and len(y) else None
        out[key] = {"a": _summary(x), "b": _summary(y), "wasserstein": distance}
    # Depth profiles on the depths both sets cover, sampled at A's rows.
    za, zb = sa["depth"], sb["depth"]
    common = za[za <= zb[-1]]
    diff = np.abs(sa["depth_profile"][:len(common)] - np.interp(common, zb, sb["depth_profile"]))
    out["depth_profile"] = {"a": sa["depth_profile"].round(3).tolist(), "b": sb["depth_profile"].round(3).tolist(),
                            "depth_a": za.tolist(), "depth_b": zb.tolist(),
                            "mean_abs": float(diff.mean()), "max_abs": float(diff.max())}
    out["with_salt"] = {"a": float(len(sa["salt_top_depth"]) / len(a.velocity)),
                        "b": float(len(sb["salt_top_depth"]) / len(b.velocity))}
    unit = "m" if a.dx is not None else "cells"
    return {"schema": SCHEMA, "a": a.describe(), "b": b.describe(), "salt_threshold": float(salt_threshold),
            "units": {"velocity": "m/s", "depth_profile": "m/s", "salt_fraction": "fraction",
                      "salt_top_depth": unit, "body_area": f"{unit}^2" if unit == "m" else "cells",
                      "bodies_per_model": "count"},
            "statistics": out, "_samples": (sa, sb)}


def format_table(result: dict) -> str:
    """The comparison as a markdown table: statistic, mean of A, mean of B, distance."""
    a, b, st, units = result["a"]["name"], result["b"]["name"], result["statistics"], result["units"]

    def num(x):
        return "n/a" if x is None else f"{x:.4g}"

    lines = [f"| statistic | {a} mean | {b} mean | distance |", "|---|---:|---:|---:|"]
    for key in ("velocity", "salt_fraction", "salt_top_depth", "body_area", "bodies_per_model"):
        lines.append(f"| {key} ({units[key]}) | {num(st[key]['a']['mean'])} | {num(st[key]['b']['mean'])} | "
                     f"{num(st[key]['wasserstein'])} (Wasserstein) |")
    dp = st["depth_profile"]
    lines.append(f"| depth_profile (m/s) | | | {num(dp['mean_abs'])} (mean abs; max {num(dp['max_abs'])}) |")
    lines.append(f"| models with salt | {num(st['with_salt']['a'])} | {num(st['with_salt']['b'])} | |")
    return "\n".join(lines)


def plot_comparison(result: dict, path: str | os.PathLike) -> None:
    """Histograms of each statistic of both sets and their mean velocity by depth, as a PNG."""
    import matplotlib.pyplot as plt

    from fwi_attn.results.style import save_figure

    sa, sb = result["_samples"]
    names = (result["a"]["name"], result["b"]["name"])
    units, st = result["units"], result["statistics"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7), layout="constrained")
    panels = [("velocity", "velocity (m/s)"), ("salt_fraction", "salt fraction per model"),
              ("salt_top_depth", f"salt top depth ({units['salt_top_depth']})"),
              ("body_area", f"salt body area ({units['body_area']})"), ("bodies_per_model", "salt bodies per model")]
    for ax, (key, label) in zip([axes[0, 0], axes[0, 2], axes[1, 0], axes[1, 1], axes[1, 2]], panels):
        x, y = sa[key], sb[key]
        both = np.concatenate([x, y])
        if not len(both):
            ax.text(0.5, 0.5, "no salt in either set", ha="center", va="center", transform=ax.transAxes)
        else:
            lo, hi = float(both.min()), float(both.max())
            if key == "bodies_per_model":
                bins = np.arange(lo - 0.5, hi + 1.5)
            elif key == "body_area" and lo > 0 and hi > lo * 10:
                bins = np.geomspace(lo, hi, 30)
                ax.set_xscale("log")
            else:
                bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
            for values, name, color in ((x, names[0], "C0"), (y, names[1], "C1")):
                if len(values):
                    ax.hist(values, bins=bins, density=True, histtype="step", lw=1.5, color=color,
                            label=f"{name} (n={len(values)})")
            ax.legend(fontsize=8)
        if key == "velocity":
            ax.axvline(result["salt_threshold"], color="0.5", ls=":", lw=1)  # cells beyond it are salt
        d = st[key]["wasserstein"]
        ax.set_title(f"{label}\nWasserstein {'n/a' if d is None else f'{d:.4g}'}", fontsize=10)
        ax.set_yticks([])
        ax.set_ylabel("density")
    ax = axes[0, 1]
    for key, depth, name, color in (("a", sa["depth"], names[0], "C0"), ("b", sb["depth"], names[1], "C1")):
        ax.plot(st["depth_profile"][key], depth, color=color, label=name)
    ax.invert_yaxis()
    ax.set_xlabel("mean velocity (m/s)")
    ax.set_ylabel(f"depth ({units['salt_top_depth']})")
    ax.set_title(f"velocity by depth\nmean abs difference {st['depth_profile']['mean_abs']:.4g} m/s", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"{names[0]} vs {names[1]}: salt above {result['salt_threshold']:g} m/s")
    save_figure(fig, path)


def write_comparison(result: dict, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``out/compare_sets.json`` and ``out/compare_sets.png`` (atomically)."""
    from fwi_attn.io.files import write_json

    out = Path(out)
    json_path, png_path = out / "compare_sets.json", out / "compare_sets.png"
    write_json(json_path, {k: v for k, v in result.items() if not k.startswith("_")})
    plot_comparison(result, png_path)
    return json_path, png_path
