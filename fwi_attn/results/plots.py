"""Figure functions: velocity in km/s on one fixed colour scale, axes in metres/seconds.

Each ``plot_*`` function draws one figure from results already computed (nothing is simulated or
inferred here) and writes it through :func:`fwi_attn.results.style.save_figure` (every configured
format, atomically), or returns it when ``out`` is None (notebooks). The physics stage's figures are
:mod:`fwi_attn.results.physics_plots`'s, the attention figures :mod:`fwi_attn.results.attention_plots`'s;
which figures a study gets, :mod:`fwi_attn.results.figures`'.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import EngFormatter, NullFormatter, ScalarFormatter

from fwi_attn.io.predictions import Predictions, read_predictions
from fwi_attn.layout import BASELINE, RUN, baseline_dir
from fwi_attn.results.style import BASELINE_COLOR, ERROR_CMAP, GATHER_CMAP, VELOCITY_CMAP, finish, variant_color


def velocity_extent(nz: int, nx: int, dx: float) -> list[float]:
    """Imshow extent in km: x from 0 to (nx-1)dx, depth downwards."""
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


def placeholder(out, text: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.set_axis_off()
    return finish(fig, out)



def log_if_wide(ax, values, axis: str = "y") -> None:
    """Log scale only when the values span more than a decade; inside one decade a log axis
    has no labelled ticks and only hides the differences."""
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v) and v > 0], dtype=float)
    if len(vals) and vals.max() / vals.min() > 10:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())



def error_limit(vmin: float, vmax: float) -> float:
    # One third of the velocity range: large salt misses saturate, typical errors stay readable.
    return (vmax - vmin) / 3



def plot_run_examples(pred: Predictions, out, dx: float, vmin: float, vmax: float, n: int = 4,
                      title: str = "") -> None:
    """Truth, prediction and error (prediction - truth) for the first ``n`` test models."""
    n = min(n, len(pred.prediction))
    lim = error_limit(vmin, vmax) / 1000
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
    return finish(fig, out)


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
                log_if_wide(ax, history[key])
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if "val_mae" in history and len(history["val_mae"]):
        best = int(np.nanargmin(history["val_mae"]))
        axes[1].axvline(epoch[best], color="0.5", ls=":", label=f"best (epoch {epoch[best]:g}) = {RUN.model}")
        axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return finish(fig, out)


def plot_training_curves(study, out) -> None:
    """Training loss and validation MAE per epoch for every variant: mean over seeds, min-max band."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    for v in study.variants:
        hists = [study.history(v, s) for s in study.seeds(v)
                 if (study.run_dir(v, s) / RUN.history).exists()]
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
    log_if_wide(axes[0], [y for line in axes[0].get_lines() for y in line.get_ydata()])
    for ax, label in zip(axes, ("training loss", "validation MAE ([-1,1] scale)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    return finish(fig, out)


def plot_metric_bars(rows: list[dict], out, metrics=("mae_ms", "rmse_ms", "ssim", "salt_iou")) -> None:
    """Bars per variant (mean over seeds) with standard-deviation error bars, one panel per metric.

    The mean-model baseline (row ``variant == "mean"``) is a dashed line, not a bar.
    """
    from fwi_attn.results.study import LABELS, LOWER_IS_BETTER

    nets = [r for r in rows if r["variant"] != "mean"]
    base = next((r for r in rows if r["variant"] == "mean"), None)
    # Two panels a row: four side by side leave no room for their titles at a paper's width.
    ncols = min(2, len(metrics))
    nrows = -(-len(metrics) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.1, 2.6 * nrows + 0.5), constrained_layout=True,
                             squeeze=False)
    for ax in axes.ravel()[len(metrics):]:
        ax.set_axis_off()
    x = np.arange(len(nets))
    for ax, m in zip(axes.ravel(), metrics):
        vals = [r[m] for r in nets]
        errs = [r[f"{m}_std"] or 0.0 for r in nets]
        ax.bar(x, vals, yerr=errs, capsize=3, color=[variant_color(r["variant"]) for r in nets])
        if base is not None:
            ax.axhline(base[m], color=BASELINE_COLOR, ls="--", lw=1.2, label="mean-model baseline")
        ax.set_xticks(x, [r["variant"] for r in nets], rotation=45, ha="right")
        ax.set_title(f"{LABELS.get(m, m)} ({'lower' if m in LOWER_IS_BETTER else 'higher'} is better)")
        ax.grid(axis="y", alpha=0.3)
        if m in ("ssim", "salt_iou", "salt_boundary_f"):
            ax.set_ylim(0, 1)
    n_seeds = sorted({r["n_seeds"] for r in nets})
    title = f"Test metrics: mean over {'/'.join(map(str, n_seeds))} seed(s), error bars = std over seeds"
    if base is not None:
        title += "\ndashed: mean-model baseline"
    fig.suptitle(title)
    return finish(fig, out)


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
        log_if_wide(ax, [r[key] * scale for r in nets if r.get(key)], "x")
        ax.margins(x=0.2, y=0.1)
        ax.xaxis.set_major_formatter(EngFormatter(sep="") if key == "n_params" else ScalarFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(f"test {LABELS.get(metric, metric)}")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    fig.suptitle("Accuracy versus cost (error bars: std over seeds)")
    return finish(fig, out)


def first_seed_predictions(study, baseline: bool = False) -> dict[str, Predictions]:
    """``{variant: predictions}`` of each variant's first seed (and the mean model's, if asked)."""
    out = {}
    for v in study.variants:
        seeds = study.seeds(v)
        path = study.run_dir(v, seeds[0]) / RUN.predictions if seeds else None
        if path is not None and path.exists():
            out[v] = read_predictions(path)
    mean = baseline_dir(study.dir) / RUN.predictions
    if baseline and mean.exists():
        out[BASELINE] = read_predictions(mean)
    return out


def plot_predictions_grid(study, out, dx: float, vmin: float, vmax: float, n: int = 3) -> None:
    """The same test models (columns): the truth (top row), each variant's seed-0 prediction, and the
    mean-model baseline (last row) when its predictions exist. Rows, not columns, per variant keep
    the figure readable at page width however many variants there are."""
    preds = first_seed_predictions(study, baseline=True)
    if not preds:
        return placeholder(out, f"no {RUN.predictions} found")
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
    return finish(fig, out)



def first_seed_files(study, name: str, read) -> dict:
    """``{variant: read(file)}`` of each variant's first-seed ``name`` (``attention.h5``, ``gathers.h5``),
    where it exists."""
    out = {}
    for v in study.variants:
        seeds = study.seeds(v)
        path = study.run_dir(v, seeds[0]) / name if seeds else None
        if path is not None and path.exists():
            out[v] = read(path)
    return out


def one_sample(files: dict, what: str) -> int:
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
    return finish(fig, out)



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
    return finish(fig, out)
