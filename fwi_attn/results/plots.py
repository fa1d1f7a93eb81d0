"""Figures: PNG at 150 dpi, velocity in km/s on one fixed colour scale, axes in metres/seconds.

Every figure is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402
from matplotlib.ticker import EngFormatter, NullFormatter, ScalarFormatter  # noqa: E402

from fwi_attn.data.store import Predictions, atomic_path, read_predictions  # noqa: E402

DPI = 150
VELOCITY_CMAP = "turbo"
GATHER_CMAP = "gray"


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save ``fig`` as PNG atomically and close it.

    A constrained layout already fits everything inside the figure; ``bbox_inches="tight"``
    would draw it a second time (about a second per figure).
    """
    constrained = isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches=None if constrained else "tight", format="png")
    plt.close(fig)


def velocity_extent(nz: int, nx: int, dx: float) -> list[float]:
    """imshow extent in km: x from 0 to (nx-1)dx, depth downwards."""
    return [0, (nx - 1) * dx / 1000, (nz - 1) * dx / 1000, 0]


def show_velocity(ax, velocity: np.ndarray, dx: float, vmin: float, vmax: float, title: str = ""):
    """Draw a ``[nz, nx]`` model (m/s) in km/s on a fixed colour scale; returns the image."""
    nz, nx = velocity.shape
    im = ax.imshow(velocity / 1000, cmap=VELOCITY_CMAP, vmin=vmin / 1000, vmax=vmax / 1000,
                   extent=velocity_extent(nz, nx, dx), aspect="equal")
    ax.set_xlabel("x (km)")
    ax.set_ylabel("depth (km)")
    if title:
        ax.set_title(title, fontsize=9)
    return im


def show_gather(ax, gather: np.ndarray, dt: float, receiver_x: np.ndarray, title: str = "",
                clip: float | None = None, percentile: float = 98.0):
    """Draw one shot gather ``[time, receiver]`` with a symmetric clip (percentile of |amplitude|)."""
    clip = clip if clip is not None else float(np.percentile(np.abs(gather), percentile)) or 1.0
    nt = gather.shape[0]
    im = ax.imshow(gather, cmap=GATHER_CMAP, vmin=-clip, vmax=clip, aspect="auto",
                   extent=[receiver_x[0] / 1000, receiver_x[-1] / 1000, (nt - 1) * dt, 0])
    ax.set_xlabel("receiver x (km)")
    ax.set_ylabel("time (s)")
    if title:
        ax.set_title(title, fontsize=9)
    return im


def plot_preview(shard, out: str | os.PathLike, n_models: int = 4, vmin: float | None = None,
                 vmax: float | None = None) -> None:
    """Models of a loaded :class:`fwi_attn.data.store.Shard` (top row) with their middle-shot gathers (below).

    Gathers get a t^2 gain (spherical-spreading and transmission loss compensation, as
    is usual for display) so that reflections and diffractions stay visible beside the
    much stronger direct wave.
    """
    n = min(n_models, shard.n)
    cfg = shard.config
    vmin = vmin if vmin is not None else cfg["geology"]["vmin"]
    vmax = vmax if vmax is not None else cfg["geology"]["vmax"]
    dx, dt = float(shard.attrs["dx"]), float(shard.attrs["dt"])
    shot = shard.n_shots // 2
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.4), squeeze=False, constrained_layout=True)
    for i in range(n):
        im = show_velocity(axes[0, i], shard.velocity[i], dx, vmin, vmax, f"model {i}")
        src = shard.source_xz[shot] / 1000
        axes[0, i].plot(src[0], src[1], marker="*", color="white", mec="black", ms=10, clip_on=False)
        gather = shard.gathers[i, shot] * (np.arange(shard.nt) * dt)[:, None] ** 2
        show_gather(axes[1, i], gather, dt, shard.receiver_xz[:, 0],
                    f"shot at x = {shard.source_xz[shot, 0]:g} m (t$^2$ gain)", percentile=99.0)
    fig.colorbar(im, ax=axes[0, :].tolist(), label="velocity (km/s)", shrink=0.8)
    a = shard.attrs
    fig.suptitle(f"{a.get('dataset', '')} / {a.get('split', '')}: {shard.nz}x{shard.nx} cells at {dx:g} m, "
                 f"{shard.n_shots} shots, {shard.n_receivers} receivers, Ricker {float(a['freq']):g} Hz")
    save_figure(fig, out)


# ----------------------------------------------------------------------------- physics stage figures


def plot_physics_run(showcase, summary: dict, out: str | os.PathLike, vmin: float, vmax: float) -> None:
    """The physics check of one run on its showcase sample (``gathers.h5``, with ``physics.json``'s
    summary): true and predicted model, then observed, predicted and residual gathers of the
    middle shot on one clip (so the residual reads against the data), and the mean model's data."""
    shot = showcase.observed.shape[0] // 2
    fig, axes = plt.subplots(1, 6, figsize=(19, 3.6), squeeze=False, constrained_layout=True)
    axes = axes[0]
    im = show_velocity(axes[0], showcase.truth, showcase.dx, vmin, vmax, f"true model (index {showcase.index})")
    show_velocity(axes[1], showcase.prediction, showcase.dx, vmin, vmax, "predicted model")
    obs, pred, base = showcase.observed[shot], showcase.predicted[shot], showcase.baseline[shot]
    # Clip from the record's later part, so reflections stay visible beside the direct wave.
    clip = float(np.percentile(np.abs(obs[obs.shape[0] // 3:]), 99.5)) or float(np.abs(obs).max()) or 1.0
    rx, dt = showcase.receiver_xz[:, 0], showcase.dt

    def rel(d):
        return float(np.linalg.norm(d - obs) / (np.linalg.norm(obs) or 1.0))

    show_gather(axes[2], obs, dt, rx, f"observed, shot at x = {showcase.source_xz[shot, 0]:g} m", clip=clip)
    show_gather(axes[3], pred, dt, rx, f"predicted (rel. L2 {rel(pred):.2f} this shot)", clip=clip)
    show_gather(axes[4], pred - obs, dt, rx, "residual (same clip)", clip=clip)
    show_gather(axes[5], base, dt, rx, f"mean model (rel. L2 {rel(base):.2f})", clip=clip)
    fig.colorbar(im, ax=axes[:2].tolist(), label="velocity (km/s)", shrink=0.8)
    m = summary["mean"]
    refl = ""
    if m.get("rel_l2_reflection") is not None and m.get("baseline_rel_l2_reflection") is not None:
        refl = (f"; on the reflections (direct wave muted, t^2 gain) {m['rel_l2_reflection']:.3f} "
                f"(mean model {m['baseline_rel_l2_reflection']:.3f})")
    fig.suptitle(f"{summary.get('variant') or ''} seed {summary.get('seed')}: mean rel. L2 misfit "
                 f"{m['rel_l2']:.3f} (mean model {m['baseline_rel_l2']:.3f}, true model {m['true_rel_l2']:.1e}){refl} "
                 f"over {summary['n_samples']} samples")
    save_figure(fig, out)


def plot_refine(runs: list[dict], out: str | os.PathLike, dx: float, vmin: float, vmax: float) -> None:
    """Before/after figure: per run, the starting, refined and (when known) true model, plus the
    band misfit per iteration."""
    import matplotlib.pyplot as plt

    from fwi_attn.results.plots import save_figure, show_velocity

    rows = len(runs)
    fig, axes = plt.subplots(rows, 4, figsize=(15, 3.3 * rows), squeeze=False, constrained_layout=True)
    for r, run in enumerate(runs):
        res, start = run["result"], run["start"]
        i0, i1 = res.initial, res.final

        def label(m, name):
            if "mae_ms" in m:
                name += f": MAE {m['mae_ms']:.0f} m/s"
            if m.get("ssim") is not None:
                name += f", SSIM {m['ssim']:.3f}"
            return name

        im = show_velocity(axes[r, 0], start, dx, vmin, vmax, label(i0, f"start ({run['start_kind']})"))
        show_velocity(axes[r, 1], res.velocity, dx, vmin, vmax, label(i1, f"refined ({res.iterations} it)"))
        if run.get("truth") is not None:
            show_velocity(axes[r, 2], run["truth"], dx, vmin, vmax, f"true model ({run['sample']})")
        else:
            axes[r, 2].axis("off")
        ax = axes[r, 3]
        ax.semilogy(np.arange(1, len(res.history) + 1), res.history, lw=1.2)
        edges = np.cumsum([s["iterations"] for s in res.stages])[:-1]
        for e in edges:
            ax.axvline(e + 0.5, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel("iteration")
        ax.set_ylabel("relative misfit (stage band)")
        ax.set_title(f"data misfit {i0['rel_l2']:.3f} -> {i1['rel_l2']:.3f}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    fig.colorbar(im, ax=axes[:, :3].ravel().tolist(), label="velocity (km/s)", shrink=0.8)
    save_figure(fig, out)


# ----------------------------------------------------------------------------- study figures
# Per-run figures (examples, training curve) and the comparison figures of a whole study.
# Colours: one fixed colour per variant, so a variant looks the same in every figure; velocity
# always in km/s on [geology.vmin, geology.vmax]; errors on one symmetric scale.

#: The registered variants' colours: tab10 for the first ten; mask_hard, the eleventh, takes
#: tab20's light brown, next to mask's brown.
VARIANT_COLORS = {
    "none": "#1f77b4", "se": "#ff7f0e", "cbam": "#2ca02c", "ca": "#d62728", "psa": "#9467bd",
    "mask": "#8c564b", "gate": "#e377c2", "inversionnet": "#7f7f7f", "m2f": "#bcbd22",
    "mixformer": "#17becf", "mask_hard": "#c49c94",
    # The confirmation stage's controls: shades of the plain UNet's blue.
    "none_salt": "#aec7e8", "none_wide": "#393b79",
}
# Black, not grey: inversionnet is grey.
BASELINE_COLOR = "black"
ERROR_CMAP = "RdBu_r"
ATTENTION_CMAP = "magma"
# Cyan, not white: visible on magma's light end too (an m2f mask that attends everywhere is all 1).
SALT_OUTLINE_COLOR = "cyan"


def _finish(fig, out):
    """Save ``fig`` to ``out`` (and close it), or return it when ``out`` is None (notebooks)."""
    if out is None:
        return fig
    save_figure(fig, out)
    return None


def figure_png(fig) -> bytes:
    """A figure as PNG bytes at the figures' resolution, closing it (for notebooks and tests)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return buf.getvalue()


def _log_if_wide(ax, values, axis: str = "y") -> None:
    """Log scale only when the values span more than a decade; inside one decade a log axis
    has no labelled ticks and only hides the differences."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0], dtype=float)
    if len(vals) and vals.max() / vals.min() > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())


def variant_color(variant: str):
    """The fixed colour of a variant (:data:`VARIANT_COLORS`; black for the mean baseline; a user
    model's from tab20b, chosen by a stable hash of its name)."""
    if variant == "mean":
        return BASELINE_COLOR
    if variant in VARIANT_COLORS:
        return VARIANT_COLORS[variant]
    import zlib

    return plt.get_cmap("tab20b")(zlib.crc32(variant.encode()) % 20)


def _error_limit(vmin: float, vmax: float) -> float:
    # One third of the velocity range: large salt misses saturate, typical errors stay readable.
    return (vmax - vmin) / 3


def plot_run_examples(pred: Predictions, out, dx: float, vmin: float, vmax: float, n: int = 4,
                      title: str = "") -> None:
    """Truth, prediction and error (prediction - truth) for the first ``n`` test models."""
    n = min(n, len(pred.prediction))
    lim = _error_limit(vmin, vmax) / 1000
    fig, axes = plt.subplots(n, 3, figsize=(9.6, 2.9 * n + 0.9), squeeze=False, constrained_layout=True)
    for i in range(n):
        truth, p = pred.target[i], pred.prediction[i]
        k = int(pred.index[i])
        mae = float(np.abs(p - truth).mean())
        im_v = show_velocity(axes[i, 0], truth, dx, vmin, vmax, f"test model {k}: truth")
        show_velocity(axes[i, 1], p, dx, vmin, vmax, "prediction")
        nz, nx = truth.shape
        im_e = axes[i, 2].imshow((p - truth) / 1000, cmap=ERROR_CMAP, vmin=-lim, vmax=lim,
                                 extent=velocity_extent(nz, nx, dx), aspect="equal")
        axes[i, 2].set_title(f"error, MAE {mae:.0f} m/s", fontsize=9)
        axes[i, 2].set_xlabel("x (km)")
        axes[i, 2].set_ylabel("depth (km)")
    fig.colorbar(im_v, ax=axes[:, :2].ravel().tolist(), location="bottom", shrink=0.6, aspect=30,
                 label="velocity (km/s)")
    fig.colorbar(im_e, ax=axes[:, 2].tolist(), location="bottom", shrink=0.9, aspect=15,
                 label="prediction - truth (km/s)")
    if title:
        fig.suptitle(title)
    return _finish(fig, out)


def plot_history(history: dict, out, title: str = "") -> None:
    """One run's training curve: training loss, validation MAE and SSIM per epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
    epoch = history["epoch"]
    panels = (("train_loss", "training loss", True), ("val_mae", "validation MAE ([-1,1] scale)", False),
              ("val_ssim", "validation SSIM", False))
    for ax, (key, label, log) in zip(axes, panels):
        if key in history:
            ax.plot(epoch, history[key], marker="o", ms=3)
            if log:
                _log_if_wide(ax, history[key])
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if "val_mae" in history and len(history["val_mae"]):
        best = int(np.nanargmin(history["val_mae"]))
        axes[1].axvline(epoch[best], color="0.5", ls=":", label=f"best (epoch {epoch[best]:g}) = model.pt")
        axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _finish(fig, out)


def plot_training_curves(study, out) -> None:
    """Training loss and validation MAE per epoch for every variant: mean over seeds, min-max band."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    for v in study.variants:
        hists = [study.history(v, s) for s in study.seeds(v)
                 if (study.run_dir(v, s) / "history.csv").exists()]
        hists = [h for h in hists if h]
        if not hists:
            continue
        n = min(len(h["epoch"]) for h in hists)
        epoch = hists[0]["epoch"][:n]
        for ax, key in zip(axes, ("train_loss", "val_mae")):
            vals = np.stack([h[key][:n] for h in hists])
            ax.plot(epoch, vals.mean(0), color=variant_color(v), label=v)
            if len(hists) > 1:
                ax.fill_between(epoch, vals.min(0), vals.max(0), color=variant_color(v), alpha=0.15, lw=0)
    if study.mean is not None:
        axes[1].axhline(study.mean["mean"]["mae"], color=BASELINE_COLOR, ls="--",
                        label="mean model (test)")
    _log_if_wide(axes[0], [y for line in axes[0].get_lines() for y in line.get_ydata()])
    for ax, label in zip(axes, ("training loss", "validation MAE ([-1,1] scale)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    return _finish(fig, out)


def plot_metric_bars(rows: list[dict], out, metrics=("mae_ms", "rmse_ms", "ssim", "salt_iou")) -> None:
    """Bars per variant (mean over seeds) with standard-deviation error bars, one panel per metric.

    The mean-model baseline (row ``variant == "mean"``) is a dashed line, not a bar.
    """
    from fwi_attn.results.study import LABELS, LOWER_IS_BETTER

    nets = [r for r in rows if r["variant"] != "mean"]
    base = next((r for r in rows if r["variant"] == "mean"), None)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.8), constrained_layout=True,
                             squeeze=False)
    x = np.arange(len(nets))
    for ax, m in zip(axes[0], metrics):
        vals = [r[m] for r in nets]
        errs = [r[f"{m}_std"] or 0.0 for r in nets]
        ax.bar(x, vals, yerr=errs, capsize=3, color=[variant_color(r["variant"]) for r in nets])
        if base is not None:
            ax.axhline(base[m], color=BASELINE_COLOR, ls="--", lw=1.2, label="mean-model baseline")
        ax.set_xticks(x, [r["variant"] for r in nets], rotation=45, ha="right")
        ax.set_title(f"{LABELS.get(m, m)} ({'lower' if m in LOWER_IS_BETTER else 'higher'} is better)",
                     fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if m in ("ssim", "salt_iou", "salt_boundary_f"):
            ax.set_ylim(0, 1)
    n_seeds = sorted({r["n_seeds"] for r in nets})
    title = f"Test metrics: mean over {'/'.join(map(str, n_seeds))} seed(s), error bars = std over seeds"
    if base is not None:
        title += "; dashed: mean-model baseline"
    fig.suptitle(title)
    return _finish(fig, out)


def plot_accuracy_cost(rows: list[dict], out, metric: str = "mae_ms") -> None:
    """Test error against parameters and inference time per sample (log axes), one point per variant."""
    from fwi_attn.results.study import LABELS

    nets = [r for r in rows if r["variant"] != "mean"]
    base = next((r for r in rows if r["variant"] == "mean"), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, key, label, scale in ((axes[0], "n_params", "parameters", 1.0),
                                  (axes[1], "time_per_sample_s", "inference time per sample (ms)", 1000.0)):
        for r in nets:
            if not r.get(key):
                continue
            # A legend, not labels beside the points: variants of similar size overlap.
            ax.errorbar(r[key] * scale, r[metric], yerr=r[f"{metric}_std"] or 0.0, fmt="o", capsize=3,
                        color=variant_color(r["variant"]), ms=7, label=r["variant"])
        if base is not None:
            ax.axhline(base[metric], color=BASELINE_COLOR, ls="--", lw=1.2, label="mean model")
        _log_if_wide(ax, [r[key] * scale for r in nets if r.get(key)], "x")
        ax.margins(x=0.2, y=0.1)
        ax.xaxis.set_major_formatter(EngFormatter(sep="") if key == "n_params" else ScalarFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {LABELS.get(metric, metric)}")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Accuracy versus cost (error bars: std over seeds)")
    return _finish(fig, out)


def _first_seed_predictions(study, baseline: bool = False) -> dict[str, Predictions]:
    """``{variant: predictions}`` of each variant's first seed (and the mean model's, if asked)."""
    out = {}
    for v in study.variants:
        seeds = study.seeds(v)
        path = study.run_dir(v, seeds[0]) / "predictions.h5" if seeds else None
        if path is not None and path.exists():
            out[v] = read_predictions(path)
    mean = study.dir / "mean" / "predictions.h5"
    if baseline and mean.exists():
        out["mean"] = read_predictions(mean)
    return out


def plot_predictions_grid(study, out, dx: float, vmin: float, vmax: float, n: int = 3) -> None:
    """The same test models (columns): the truth (top row), each variant's seed-0 prediction, and the
    mean-model baseline (last row) when its predictions exist. Rows, not columns, per variant keep
    the figure readable at page width however many variants there are."""
    preds = _first_seed_predictions(study, baseline=True)
    if not preds:
        return _placeholder(out, "no predictions.h5 found")
    first = next(iter(preds.values()))
    n = min(n, len(first.index))
    ks = [int(k) for k in first.index[:n]]
    fig, axes = plt.subplots(len(preds) + 1, n, figsize=(2.6 * n + 0.6, 2.2 * (len(preds) + 1) + 0.8),
                             squeeze=False, constrained_layout=True)
    for j, k in enumerate(ks):
        im = show_velocity(axes[0, j], first.target[j], dx, vmin, vmax, f"test model {k}: truth")
        for i, (v, p) in enumerate(preds.items(), start=1):
            ax = axes[i, j]
            rows = np.flatnonzero(p.index == k)
            if not len(rows):
                ax.set_axis_off()
                continue
            row = int(rows[0])
            mae = float(np.abs(p.prediction[row] - p.target[row]).mean())
            name = "mean model" if v == "mean" else v
            show_velocity(ax, p.prediction[row], dx, vmin, vmax, f"{name}: MAE {mae:.0f} m/s")
    for ax in axes[:-1].ravel():
        ax.set_xlabel("")
    for ax in axes[:, 1:].ravel():
        ax.set_ylabel("")
    fig.colorbar(im, ax=axes.ravel().tolist(), location="bottom", shrink=0.6, aspect=30, fraction=0.15 / len(axes),
                 label="velocity (km/s)")
    return _finish(fig, out)


def _placeholder(out, text: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return _finish(fig, out)


def _first_seed_files(study, name: str, read) -> dict:
    """``{variant: read(file)}`` of each variant's first-seed ``name`` (``attention.h5``, ``gathers.h5``),
    where it exists."""
    out = {}
    for v in study.variants:
        seeds = study.seeds(v)
        path = study.run_dir(v, seeds[0]) / name if seeds else None
        if path is not None and path.exists():
            out[v] = read(path)
    return out


def _one_sample(files: dict, what: str) -> int:
    """The sample index every file of ``files`` (``{variant: Attention or Showcase}``) shows.

    Every run picks the same sample from the test targets, so files of different samples mean
    that one is stale (made before the data changed).
    """
    first, *rest = files.values()
    for f in rest:
        if f.index != first.index:
            raise ValueError(f"{first.path} shows test sample {first.index} but {f.path} shows sample {f.index}: "
                             f"one of them is stale; rerun `fwi-attn {what}` for the older run")
    return first.index


def plot_gathers(study, out, vmin: float, vmax: float, dx: float) -> None:
    """Observed versus re-simulated versus residual middle-shot gathers of one test model, from
    each variant's seed-0 ``gathers.h5`` (written by ``fwi-attn physics``; nothing is simulated here).

    The test model is the showcase sample (:func:`fwi_attn.learn.evaluate.showcase_index`: the
    one with the most salt). Top row: the true model, its observed gather, and the residual of the
    mean-model baseline. Then one row per variant: its predicted model, the gather re-simulated
    from it with the test shard's exact acquisition, and the residual (observed - re-simulated).
    All gathers share the observed data's clip, so residual amplitudes compare directly with the data.
    """
    from fwi_attn.physics.check import read_gathers

    shows = _first_seed_files(study, "gathers.h5", read_gathers)
    if not shows:
        return _placeholder(out, "no gathers.h5 found")
    k = _one_sample(shows, "physics")
    first = next(iter(shows.values()))
    shot = first.observed.shape[0] // 2
    observed = first.observed[shot]
    late = observed[observed.shape[0] // 3:]
    clip = float(np.percentile(np.abs(late), 99.5)) or 1.0
    rx = first.receiver_xz[:, 0]
    dt = first.dt

    def residual(show, gathers):
        res = show.observed[shot] - gathers[shot]
        return res, float(np.linalg.norm(res) / (np.linalg.norm(show.observed[shot]) or 1.0))

    fig, axes = plt.subplots(len(shows) + 1, 3, figsize=(9.5, 2.45 * (len(shows) + 1) + 0.8), squeeze=False,
                             constrained_layout=True)
    im_v = show_velocity(axes[0, 0], first.truth, dx, vmin, vmax, f"true model (test model {k})")
    src = first.source_xz[shot] / 1000
    axes[0, 0].plot(src[0], src[1], marker="*", color="white", mec="black", ms=9, clip_on=False)
    show_gather(axes[0, 1], observed, dt, rx, "observed", clip=clip)
    res, rel = residual(first, first.baseline)
    show_gather(axes[0, 2], res, dt, rx, f"mean model: residual, rel. L2 {rel:.2f}", clip=clip)
    for i, (v, g) in enumerate(shows.items(), start=1):
        res, rel = residual(g, g.predicted)
        show_velocity(axes[i, 0], g.prediction, dx, vmin, vmax, f"{v}: predicted model")
        show_gather(axes[i, 1], g.predicted[shot], dt, rx, f"{v}: re-simulated", clip=clip)
        im_g = show_gather(axes[i, 2], res, dt, rx, f"{v}: residual, rel. L2 {rel:.2f}", clip=clip)
    for ax in axes[:-1].ravel():
        ax.set_xlabel("")
    for ax in axes[:, 1:].ravel():
        ax.set_ylabel("")
    # Colorbars take a fixed share of the axes' height: keep it small in these tall figures.
    frac = 0.15 / len(axes)
    fig.colorbar(im_v, ax=axes[:, 0].tolist(), location="bottom", shrink=0.9, fraction=frac,
                 label="velocity (km/s)")
    fig.colorbar(im_g, ax=axes[:, 1:].ravel().tolist(), location="bottom", shrink=0.7, aspect=40, fraction=frac,
                 label=f"pressure (clip ±{clip:.3g}: 99.5th percentile of the observed late arrivals)")
    fig.suptitle(f"Data fit, shot at x = {first.source_xz[shot, 0]:g} m (seed-0 models)")
    return _finish(fig, out)


def _reflection_rows(study, rows: list[dict]) -> None:
    """Add the reflection misfits of ``physics.json`` (mean over seeds of each run's mean, and the
    std over seeds) to the rows of :func:`fwi_attn.results.study.physics_table`, where present."""
    keys = [f"{p}{m}_reflection" for p in ("", "baseline_", "true_") for m in ("rel_l2", "trace_corr")]
    for row in rows:
        runs = [study.physics[(row["variant"], s)] for s in study.seeds(row["variant"])
                if (row["variant"], s) in study.physics]
        for key in keys:
            vals = [r["mean"][key] for r in runs if r.get("mean", {}).get(key) is not None]
            if vals and key not in row:
                row[key] = float(np.mean(vals))
                row[f"{key}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0


def plot_physics(study, out) -> None:
    """Relative L2 data misfit and trace correlation of re-simulated predictions, per variant: on
    the raw traces and, where physics.json holds them, on the reflections (direct wave muted,
    late arrivals gained: :func:`fwi_attn.physics.check.reflection_window`)."""
    from fwi_attn.results.study import physics_table

    rows = physics_table(study)
    if not rows:
        return _placeholder(out, "no physics.json found")
    _reflection_rows(study, rows)
    panels = [("rel_l2", "relative L2 data misfit (lower is better)"),
              ("trace_corr", "trace correlation (higher is better)")]
    if any("rel_l2_reflection" in r for r in rows):
        panels += [("rel_l2_reflection", "relative L2, reflections only (lower is better)"),
                   ("trace_corr_reflection", "trace correlation, reflections only (higher is better)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), constrained_layout=True)
    x = np.arange(len(rows))
    for ax, (key, label) in zip(axes, panels):
        vals = [r.get(key, np.nan) for r in rows]
        errs = [r.get(f"{key}_std", 0.0) for r in rows]
        ax.bar(x, vals, yerr=errs, capsize=3, color=[variant_color(r["variant"]) for r in rows])
        base = [r[f"baseline_{key}"] for r in rows if f"baseline_{key}" in r]
        if base:
            ax.axhline(float(np.mean(base)), color=BASELINE_COLOR, ls="--", lw=1.2,
                       label=f"mean model ({np.mean(base):.3f})")
        true = [r[f"true_{key}"] for r in rows if f"true_{key}" in r]
        if true:
            # The self-check: the true model re-simulated must reproduce the data (0 misfit, corr 1).
            ax.axhline(float(np.mean(true)), color="tab:red", ls=":", lw=1.5,
                       label=f"true model, self-check ({np.mean(true):.3f})")
        if base or true:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.32), ncol=2, frameon=False)
        ax.set_xticks(x, [r["variant"] for r in rows], rotation=45, ha="right")
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    n = sorted({r["n_seeds"] for r in rows})
    fig.suptitle(f"Physics check: predictions re-simulated against the recorded test gathers "
                 f"(mean over {'/'.join(map(str, n))} seed(s), error bars = std)", fontsize=10)
    return _finish(fig, out)


def plot_paired_samples(study, out, reference: str = "none", metric: str = "mae",
                        variants: list[str] | None = None):
    """Per test sample: each variant's ``metric`` (mean over seeds) against the reference's.

    Points below the diagonal are samples where the variant beats the reference (for error
    metrics); the report's comparison pairs these samples (and adds the variance between trainings).
    """
    from fwi_attn.results.study import LABELS, per_sample

    ref = per_sample(study, reference, metric)
    others = [v for v in (variants or study.variants) if v != reference and study.seeds(v)]
    fig, ax = plt.subplots(figsize=(5.5, 5), constrained_layout=True)
    for v in others:
        ax.scatter(ref, per_sample(study, v, metric), s=14, alpha=0.7, color=variant_color(v), label=v)
    lo = min([ref.min()] + [per_sample(study, v, metric).min() for v in others])
    hi = max([ref.max()] + [per_sample(study, v, metric).max() for v in others])
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, ls="--")
    label = LABELS.get(metric, metric)
    ax.set_xlabel(f"{reference}: {label}")
    ax.set_ylabel(f"variant: {label}")
    ax.set_title(f"Per test sample (mean over seeds) against {reference}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _finish(fig, out)


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
        axes[0, 1].text(0.0, 0.5, "no attention map:\n" + ", ".join(without), ha="left", va="center", fontsize=10,
                        transform=axes[0, 1].transAxes)
    im_a = None
    for i, v in enumerate(with_maps, start=1):
        label = axes[i, 0]
        label.set_axis_off()
        label.text(0.5, 0.5, v, ha="center", va="center", fontsize=13, weight="bold", transform=label.transAxes)
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
    return _finish(fig, out)


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
        ax.set_title(f"attention as a detector of {title}", fontsize=10)
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
    fig.suptitle(title, fontsize=10)
    return _finish(fig, out)


def _attention_iou_pairs(run_dirs, kind: str) -> dict[str, tuple[list, list]]:
    """Per map, the (AUC, salt IoU) pairs of every sample of ``run_dirs`` (both values present)."""
    from pathlib import Path

    from fwi_attn.io.attention_salt import ATTENTION_SALT_FILE, read_attention_salt
    from fwi_attn.results.study import read_json

    pairs: dict[str, tuple[list, list]] = {}
    for d in run_dirs:
        att = read_attention_salt(Path(d) / ATTENTION_SALT_FILE)
        iou = read_json(Path(d) / "metrics.json")["per_sample"]["salt_iou"]
        if len(iou) != len(att["indices"]):
            raise ValueError(f"{d}: metrics.json scores {len(iou)} samples, {ATTENTION_SALT_FILE} "
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
        return _placeholder(out, "no spatial attention map: nothing to relate to salt IoU")
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
    fig.suptitle(title or f"Per-sample attention {kind} AUC against salt IoU (Spearman rho)", fontsize=10)
    return _finish(fig, out)


# ----------------------------------------------------------------------------- fwi-attn figures


def draw_run_figures(cfg, variant: str, seed: int) -> list:
    """The per-run figures of one (variant, seed): test examples and training curves."""
    from fwi_attn.layout import run_dir, run_figure_paths, study_dir
    from fwi_attn.io.history import read_history

    study = study_dir(cfg)
    run = run_dir(study, variant, seed)
    paths = run_figure_paths(study, variant, seed)
    g = cfg.geology
    plot_run_examples(read_predictions(run / "predictions.h5"), paths["examples"], cfg.survey.dx, g.vmin, g.vmax,
                      cfg.evaluate.n_examples, title=f"{variant}, seed {seed}: test examples")
    plot_history(read_history(run / "history.csv"), paths["history"], title=f"{variant}, seed {seed}")
    return list(paths.values())


def draw_comparison_figures(cfg) -> list:
    """Every comparison figure and the metric table (CSV + markdown) of a study."""
    from fwi_attn.layout import comparison_figure_paths, study_dir
    from fwi_attn.results.study import METRICS, comparison_table, load_study, table_markdown, write_table_csv
    from fwi_attn.data.store import atomic_path

    study = load_study(study_dir(cfg), config=cfg.to_dict())
    paths = comparison_figure_paths(study.dir)
    g, dx = cfg.geology, cfg.survey.dx
    rows = comparison_table(study, metrics=METRICS)
    write_table_csv(rows, paths["table_csv"], metrics=METRICS)
    with atomic_path(paths["table_md"], suffix=".md") as tmp:
        tmp.write_text(table_markdown(rows))
    plot_metric_bars(rows, paths["bars"])
    plot_accuracy_cost(rows, paths["cost"])
    plot_training_curves(study, paths["curves"])
    plot_predictions_grid(study, paths["predictions"], dx, g.vmin, g.vmax, n=min(3, cfg.evaluate.n_examples))
    draw_attention_figure(cfg, study, paths["attention"])
    plot_gathers(study, paths["gathers"], g.vmin, g.vmax, dx)
    plot_physics(study, paths["physics"])
    draw_attention_salt_figures(study, paths["attention_salt"], paths["attention_iou"])
    return list(paths.values())


def draw_attention_salt_figures(study, out_auc, out_iou) -> None:
    """The attention-against-salt figures of the compared runs: AUC by variant and map, and the
    per-sample AUC against salt IoU of one variant (the screening's selection, else the first
    variant with a spatial map)."""
    files = [study.run_dir(v, s) / "attention_salt.json" for v, s in study.metrics]
    files = [f for f in files if f.exists()]
    if not files:
        _placeholder(out_auc, "no attention_salt.json found")
        _placeholder(out_iou, "no attention_salt.json found")
        return
    plot_attention_salt(files, out_auc)
    spatial = [v for v in study.variants if any(study.attention.get((v, s), {}).get("levels") for s in study.seeds(v))]
    chosen = [v for v in (study.selection or {}).get("selected", []) if v in spatial] or spatial[:1]
    if not chosen:
        _placeholder(out_iou, "no variant with a spatial attention map")
        return
    v = chosen[0]
    plot_attention_vs_iou([study.run_dir(v, s) for s in study.seeds(v)], out_iou,
                          title=f"{v}: per-sample salt AUC of each map against the prediction's salt IoU (all seeds)")


def draw_attention_figure(cfg, study, out) -> None:
    """Attention maps of every variant's seed-0 model on the showcase test model (the one with the
    most salt), from each run's ``attention.h5`` (written by ``fwi-attn evaluate``: the maps of the
    network with its training normalisation; no network is loaded here)."""
    from fwi_attn.learn.evaluate import read_attention

    atts = _first_seed_files(study, "attention.h5", read_attention)
    if not atts:
        return _placeholder(out, "no attention.h5 found")
    k = _one_sample(atts, "evaluate")
    first = next(iter(atts.values()))
    g = cfg.geology
    plot_attention_maps({v: a.maps for v, a in atts.items()}, {v: a.pad for v, a in atts.items()}, first.velocity,
                        out, cfg.survey.dx, g.vmin, g.vmax, cfg.evaluate.salt_threshold, k)


def plot_generalisation(predictions: dict[str, Predictions], out, dx: float, vmin: float, vmax: float,
                        variant: str, n: int = 2) -> None:
    """True versus predicted windows of one variant on each set: a row per set (``predictions``:
    ``{set name: its predictions.h5}``, in-distribution first), ``n`` samples per row as
    truth/prediction pairs, one velocity scale (km/s) for every panel."""
    fig, axes = plt.subplots(len(predictions), 2 * n, figsize=(3.0 * 2 * n, 2.4 * len(predictions) + 0.9),
                             squeeze=False, constrained_layout=True)
    im = None
    for row, (name, pred) in enumerate(predictions.items()):
        for j in range(n):
            for k, what in enumerate(("truth", "prediction")):
                ax = axes[row, 2 * j + k]
                if j >= len(pred.prediction):
                    ax.axis("off")
                    continue
                v = pred.target[j] if what == "truth" else pred.prediction[j]
                mae = float(np.abs(pred.prediction[j] - pred.target[j]).mean())
                title = f"{name} {int(pred.index[j])}: truth" if what == "truth" else f"prediction, MAE {mae:.0f} m/s"
                im = show_velocity(ax, v, dx, vmin, vmax, title)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), location="bottom", shrink=0.5, aspect=30,
                     label="velocity (km/s)")
    fig.suptitle(f"{variant}: true and predicted models, in-distribution test split and each test set")
    return _finish(fig, out)
