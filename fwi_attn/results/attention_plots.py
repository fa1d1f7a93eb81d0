"""Attention figures: the maps of each variant on one test model, and how well the maps pick
out salt (ROC AUC by map, and against the prediction's salt IoU)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from fwi_attn.layout import RUN
from fwi_attn.results.plots import placeholder, show_velocity, velocity_extent
from fwi_attn.results.style import ATTENTION_CMAP, SALT_OUTLINE_COLOR, finish, variant_color  # noqa: F401


def _crop_map(amap: np.ndarray, pad: tuple[int, int, int, int], nz: int, nx: int) -> np.ndarray:
    """Cut a ``[h, w]`` map on the UNet's padded grid (padded by ``pad`` = left, right, top, bottom
    cells) back to the velocity model's extent."""
    left, right, top, bottom = pad
    hp, wp = nz + top + bottom, nx + left + right
    h, w = amap.shape
    fz, fx = hp / h, wp / w
    z0, z1 = int(round(top / fz)), max(int(round((top + nz) / fz)), int(round(top / fz)) + 1)
    x0, x1 = int(round(left / fx)), max(int(round((left + nx) / fx)), int(round(left / fx)) + 1)
    return amap[z0:z1, x0:x1]


def _is_salt_map(key: str) -> bool:
    """A salt head's predicted salt probability (``salt_heads.<level>``), not an attention map."""
    return key.startswith("salt_heads.")


def plot_attention_maps(maps_by_variant: dict[str, dict[str, np.ndarray]], pads: dict[str, tuple], truth: np.ndarray,
                        out, dx: float, vmin: float, vmax: float, salt_threshold: float,
                        sample: int, max_maps: int = 8) -> None:
    """The true model, then one row per variant with its attention maps (colour scale 0 to 1).

    ``maps_by_variant``: ``{variant: {module path: [h, w]}}`` on each network's padded grid, which
    ``pads[variant]`` (left, right, top, bottom cells) crops back to the model's extent.

    Maps are drawn on the model's extent (nearest-neighbour, so coarse levels look coarse) in
    forward order, with the true salt outline (``truth > salt_threshold``) in cyan. Maps keyed
    ``salt_heads.<level>`` are a salt head's predicted salt probability (m2f's, which the next
    finer level's mask is cut from, or any UNet's under salt supervision), titled "predicted
    salt". Variants without a spatial map (channel attention only, or none) are named on the top
    row as having "no attention map".
    """
    nz, nx = truth.shape
    salt_maps = any(_is_salt_map(k) for m in maps_by_variant.values() for k in m)
    with_maps = [v for v, m in maps_by_variant.items() if m]
    without = [v for v, m in maps_by_variant.items() if not m]
    n_cols = 1 + max(1, min(max_maps, max((len(maps_by_variant[v]) for v in with_maps), default=1)))
    n_rows = 1 + len(with_maps)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.2 * n_cols, 2.2 * n_rows + 0.8), squeeze=False,
                             constrained_layout=True)
    extent = velocity_extent(nz, nx, dx)
    xs, zs = np.arange(nx) * dx / 1000, np.arange(nz) * dx / 1000
    im_v = show_velocity(axes[0, 0], truth, dx, vmin, vmax, f"true model (test model {sample})")
    for ax in axes[0, 1:]:
        ax.set_axis_off()
    if without:
        axes[0, 1].text(0.0, 0.5, "no attention map:\n" + ", ".join(without), ha="left", va="center", fontsize=8,
                        transform=axes[0, 1].transAxes)
    im_a = None
    for i, v in enumerate(with_maps, start=1):
        label = axes[i, 0]
        label.set_axis_off()
        label.text(0.5, 0.5, v, ha="center", va="center", fontsize=9, weight="bold", transform=label.transAxes)
        maps = list(maps_by_variant[v].items())[:max_maps]
        for j in range(1 + len(maps), n_cols):
            axes[i, j].set_axis_off()
        for j, (key, amap) in enumerate(maps, start=1):
            ax = axes[i, j]
            shown = _crop_map(amap, pads[v], nz, nx)
            im_a = ax.imshow(shown, cmap=ATTENTION_CMAP, vmin=0, vmax=1, extent=extent, aspect="equal",
                             interpolation="nearest")
            if truth.max() > salt_threshold:
                ax.contour(xs, zs, truth, levels=[salt_threshold], colors=SALT_OUTLINE_COLOR, linewidths=0.8)
            name = f"predicted salt, level {key.rpartition('.')[2]}" if _is_salt_map(key) else key.removesuffix(".attn")
            ax.set_title(f"{name} ({amap.shape[0]}x{amap.shape[1]})", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im_v, ax=axes[0, 0], location="bottom", shrink=0.9, label="velocity (km/s)")
    if im_a is not None:
        fig.colorbar(im_a, ax=axes[1:, 1:].ravel().tolist(), location="bottom", shrink=0.5, aspect=40,
                     fraction=0.15 / len(axes),
                     label="attention weight (0 = suppressed, 1 = passed)"
                     + ("; predicted salt probability" if salt_maps else ""))
    what = "Spatial attention maps" + (" and predicted salt" if salt_maps else "")
    fig.suptitle(f"{what} on one test model (seed-0 models; cyan: true salt outline)")
    return finish(fig, out)


# ----------------------------------------------------------------------------- attention against the salt


def _level_label(key: str) -> str:
    """A map's short name: ``salt_heads.2`` -> ``salt head 2``, ``decoder.1.attn`` -> ``decoder.1``."""
    return f"salt head {key.rpartition('.')[2]}" if _is_salt_map(key) else key.removesuffix(".attn")


def attention_salt_summary(files) -> list[dict]:
    """One row per (variant, map) of a study's ``attention_salt.json`` files (any seeds).

    Args:
        files: paths of ``attention_salt.json`` files (:func:`fwi_attn.learn.evaluate.read_attention_salt`).

    Returns:
        Rows ``{"variant", "level" (module path), "kind", "stride", "n_seeds", "n_samples",
        "salt_auc", "salt_auc_err", "boundary_auc", "boundary_auc_err"}`` sorted by variant, then
        coarse to fine. An AUC is the mean over seeds of each seed's mean over its samples
        (samples without a value left out); ``*_err`` the standard deviation over seeds with two
        or more seeds, else the standard error over samples; None without any value. Variants
        whose files hold no spatial map (``levels`` empty) give no row.
    """
    from fwi_attn.io.attention_salt import read_attention_salt

    values: dict[tuple[str, str], dict] = {}
    for path in files:
        data = read_attention_salt(path)
        for key, lv in data["levels"].items():
            row = values.setdefault((data["variant"], key), {"kind": lv["kind"], "stride": lv["stride"], "seeds": []})
            row["seeds"].append({m: [v for v in lv[f"{m}_auc"] if v is not None] for m in ("salt", "boundary")})
    rows = []
    for (variant, key), row in values.items():
        out = {"variant": variant, "level": key, "kind": row["kind"], "stride": row["stride"],
               "n_seeds": len(row["seeds"]), "n_samples": sum(len(s["salt"]) for s in row["seeds"])}
        for m in ("salt", "boundary"):
            per_seed = [s[m] for s in row["seeds"] if s[m]]
            means = [float(np.mean(v)) for v in per_seed]
            out[f"{m}_auc"] = float(np.mean(means)) if means else None
            if len(means) >= 2:
                out[f"{m}_auc_err"] = float(np.std(means, ddof=1))
            elif means and len(per_seed[0]) >= 2:
                out[f"{m}_auc_err"] = float(np.std(per_seed[0], ddof=1) / np.sqrt(len(per_seed[0])))
            else:
                out[f"{m}_auc_err"] = None
        rows.append(out)
    return sorted(rows, key=lambda r: (r["variant"], -r["stride"], r["level"]))


def plot_attention_salt(files, out, variants_without_map: list[str] | None = None) -> None:
    """ROC AUC of each variant's attention maps (and salt heads) as detectors of salt (left) and
    of the salt boundary (right): one bar per map, grouped by variant, coarse to fine levels,
    coloured by stride; hatched bars are salt heads' predicted salt. Dashed line: chance (0.5).

    Args:
        files: a study's ``attention_salt.json`` paths (every variant and seed).
        out: PNG path (None: return the figure).
        variants_without_map: names to list as having no spatial map (default: the variants
            whose files hold no map, e.g. ``se``, ``none``, ``inversionnet``).
    """
    from fwi_attn.io.attention_salt import read_attention_salt

    files = list(files)
    rows = attention_salt_summary(files)
    if variants_without_map is None:
        spatial = {r["variant"] for r in rows}
        variants_without_map = sorted({read_attention_salt(f)["variant"] for f in files} - spatial)
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    strides = sorted({r["stride"] for r in rows}, reverse=True)
    cmap = plt.get_cmap("viridis")
    colors = {st: cmap(i / max(len(strides) - 1, 1)) for i, st in enumerate(strides)}
    fig, axes = plt.subplots(1, 2, figsize=(max(9.0, 0.7 * len(rows) + 3), 4.6), constrained_layout=True,
                             squeeze=False)
    for ax, m, title in ((axes[0, 0], "salt", "salt cells"), (axes[0, 1], "boundary", "salt boundary cells")):
        x, ticks = 0.0, []
        for v in variants:
            mine = [r for r in rows if r["variant"] == v]
            start = x
            for r in mine:
                if r[f"{m}_auc"] is not None:
                    ax.bar(x, r[f"{m}_auc"], yerr=r[f"{m}_auc_err"] or 0.0, capsize=2, width=0.8,
                           color=colors[r["stride"]], hatch="//" if r["kind"] == "salt_head" else None,
                           edgecolor="black" if r["kind"] == "salt_head" else None, linewidth=0.5)
                x += 1
            ticks.append(((start + x - 1) / 2, v))
            x += 0.8
        ax.axhline(0.5, color="gray", ls="--", lw=1)
        ax.set_xticks([t for t, _ in ticks], [v for _, v in ticks], rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("ROC AUC")
        ax.set_title(f"attention as a detector of {title}")
        ax.grid(axis="y", alpha=0.3)
    from matplotlib.patches import Patch

    handles = [Patch(color=colors[st], label=f"stride {st}") for st in strides]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="salt head"))
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    n_seeds = sorted({r["n_seeds"] for r in rows})
    title = (f"Attention maps against the true salt: mean over samples and {'/'.join(map(str, n_seeds)) or 0} "
             f"seed(s)\nerror bars: std over seeds (s.e. over samples with one seed); dashed: chance")
    if variants_without_map:
        title += f"\nno spatial map: {', '.join(variants_without_map)}"
    fig.suptitle(title)
    return finish(fig, out)


def _attention_iou_pairs(run_dirs, kind: str) -> dict[str, tuple[list, list]]:
    """Per map, the (AUC, salt IoU) pairs of every sample of ``run_dirs`` (both values present)."""
    from pathlib import Path

    from fwi_attn.io.attention_salt import read_attention_salt
    from fwi_attn.results.study import read_json

    pairs: dict[str, tuple[list, list]] = {}
    for d in run_dirs:
        att = read_attention_salt(Path(d) / RUN.attention_salt)
        iou = read_json(Path(d) / RUN.metrics)["per_sample"]["salt_iou"]
        if len(iou) != len(att["indices"]):
            raise ValueError(f"{d}: {RUN.metrics} scores {len(iou)} samples, {RUN.attention_salt} "
                             f"{len(att['indices'])}; rerun `fwi-attn evaluate` for this run")
        for key, lv in att["levels"].items():
            a, b = pairs.setdefault(key, ([], []))
            for auc, i in zip(lv[f"{kind}_auc"], (iou[k] for k in att["indices"])):
                if auc is not None and i is not None and np.isfinite(i):
                    a.append(auc)
                    b.append(i)
    return pairs


def attention_iou_correlation(run_dirs, kind: str = "salt") -> dict[str, dict]:
    """Spearman rank correlation, per map, of a variant's per-sample attention AUC (``kind``:
    ``"salt"`` or ``"boundary"``) with its per-sample salt IoU, pooled over ``run_dirs`` (the
    variant's seeds: folders holding ``attention_salt.json`` and ``metrics.json``).

    Returns:
        ``{module path: {"rho", "p_value", "n"}}``; rho and p None with fewer than 3 pairs or
        constant values.
    """
    from scipy.stats import spearmanr

    out = {}
    for key, (auc, iou) in _attention_iou_pairs(run_dirs, kind).items():
        rho, p = (None, None)
        if len(auc) >= 3 and np.ptp(auc) > 0 and np.ptp(iou) > 0:
            r = spearmanr(auc, iou)
            rho, p = float(r.statistic), float(r.pvalue)
        out[key] = {"rho": rho, "p_value": p, "n": len(auc)}
    return out


def plot_attention_vs_iou(run_dirs, out, kind: str = "salt", title: str = "") -> None:
    """Per-sample attention AUC (``kind``: salt or boundary) against the sample's salt IoU, one
    panel per map, pooled over ``run_dirs`` (one variant's seeds), with Spearman's rho
    (:func:`attention_iou_correlation`) in each panel's title."""
    pairs = _attention_iou_pairs(run_dirs, kind)
    corr = attention_iou_correlation(run_dirs, kind)
    if not pairs:
        return placeholder(out, "no spatial attention map: nothing to relate to salt IoU")
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3.4), constrained_layout=True, squeeze=False)
    for ax, (key, (auc, iou)) in zip(axes[0], pairs.items()):
        ax.scatter(auc, iou, s=12, alpha=0.7)
        c = corr[key]
        rho = "n/a" if c["rho"] is None else f"{c['rho']:.2f} (p {c['p_value']:.2g})"
        ax.set_title(f"{_level_label(key)}: rho {rho}, n {c['n']}", fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axvline(0.5, color="gray", ls="--", lw=0.8)
        ax.set_xlabel(f"{kind} ROC AUC of the map")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("salt IoU of the prediction")
    fig.suptitle(title or f"Per-sample attention {kind} AUC against salt IoU (Spearman rho)")
    return finish(fig, out)


# ----------------------------------------------------------------------------- fwi-attn figures
