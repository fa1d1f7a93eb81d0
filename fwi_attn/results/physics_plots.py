"""Figures of the data and physics stages: a shard's preview, a run's physics check, FWI
refinement, and the study's data-fit and misfit comparison."""
from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np

from fwi_attn.layout import RUN
from fwi_attn.results.plots import first_seed_files, one_sample, placeholder, show_gather, show_velocity
from fwi_attn.results.style import BASELINE_COLOR, ERROR_CMAP, finish, save_figure, variant_color  # noqa: F401


def plot_preview(shard, out: str | os.PathLike, n_models: int = 4, vmin: float | None = None,
                 vmax: float | None = None) -> None:
    """Models of a loaded :class:`fwi_attn.io.shard.Shard` (top row) with their middle-shot gathers (below).

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
                    "gather (t$^2$ gain)", percentile=99.0)
    fig.colorbar(im, ax=axes[0, :].tolist(), label="velocity (km/s)", shrink=0.8)
    a = shard.attrs
    fig.suptitle(f"{a.get('dataset', '')} / {a.get('split', '')}: {shard.nz}x{shard.nx} cells at {dx:g} m, "
                 f"{shard.n_shots} shots, {shard.n_receivers} receivers, Ricker {float(a['freq']):g} Hz; "
                 f"gathers of the shot at x = {shard.source_xz[shot, 0]:g} m (star)")
    save_figure(fig, out)


# ----------------------------------------------------------------------------- physics stage figures



def plot_physics_run(showcase, summary: dict, out: str | os.PathLike, vmin: float, vmax: float) -> None:
    """The physics check of one run on its showcase sample (``gathers.h5``, with ``physics.json``'s
    summary): true and predicted model, then observed, predicted and residual gathers of the
    middle shot on one clip (so the residual reads against the data), and the mean model's data."""
    shot = showcase.observed.shape[0] // 2
    # Two rows of three, not six in a row: readable at a paper's width.
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.6), squeeze=False, constrained_layout=True)
    axes = axes.ravel()
    im = show_velocity(axes[0], showcase.truth, showcase.dx, vmin, vmax, f"true model (index {showcase.index})")
    show_velocity(axes[1], showcase.prediction, showcase.dx, vmin, vmax, "predicted model")
    obs, pred, base = showcase.observed[shot], showcase.predicted[shot], showcase.baseline[shot]
    # Clip from the record's later part, so reflections stay visible beside the direct wave.
    clip = float(np.percentile(np.abs(obs[obs.shape[0] // 3:]), 99.5)) or float(np.abs(obs).max()) or 1.0
    rx, dt = showcase.receiver_xz[:, 0], showcase.dt

    def rel(d):
        return float(np.linalg.norm(d - obs) / (np.linalg.norm(obs) or 1.0))

    show_gather(axes[2], obs, dt, rx, f"observed, shot at {showcase.source_xz[shot, 0]:g} m", clip=clip)
    show_gather(axes[3], pred, dt, rx, f"predicted, rel. L2 {rel(pred):.2f}", clip=clip)
    show_gather(axes[4], pred - obs, dt, rx, "residual (same clip)", clip=clip)
    show_gather(axes[5], base, dt, rx, f"mean model, rel. L2 {rel(base):.2f}", clip=clip)
    fig.colorbar(im, ax=axes[:2].tolist(), label="velocity (km/s)", shrink=0.8, location="left")
    m = summary["mean"]
    refl = ""
    if m.get("rel_l2_reflection") is not None and m.get("baseline_rel_l2_reflection") is not None:
        refl = (f";\non the reflections (direct wave muted, t^2 gain) {m['rel_l2_reflection']:.3f} "
                f"(mean model {m['baseline_rel_l2_reflection']:.3f})")
    fig.suptitle(f"{summary.get('variant') or ''} seed {summary.get('seed')}: mean rel. L2 misfit "
                 f"{m['rel_l2']:.3f} (mean model {m['baseline_rel_l2']:.3f}, true model {m['true_rel_l2']:.1e}){refl} "
                 f"over {summary['n_samples']} samples")
    save_figure(fig, out)


def plot_refine(runs: list[dict], out: str | os.PathLike, dx: float, vmin: float, vmax: float) -> None:
    """Before/after figure: per run, the starting, refined and (when known) true model, plus the
    band misfit per iteration."""
    rows = len(runs)
    fig, axes = plt.subplots(rows, 4, figsize=(12, 3.4 * rows), squeeze=False, constrained_layout=True)
    for r, run in enumerate(runs):
        res, start = run["result"], run["start"]
        i0, i1 = res.initial, res.final

        def label(m, name):
            # A line each: one line overruns a quarter of a paper's width.
            scores = [f"MAE {m['mae_ms']:.0f} m/s"] if "mae_ms" in m else []
            if m.get("ssim") is not None:
                scores.append(f"SSIM {m['ssim']:.3f}")
            return "\n".join([name, *scores])

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
        ax.set_title(f"data misfit\n{i0['rel_l2']:.3f} → {i1['rel_l2']:.3f}")
        ax.grid(True, which="both", alpha=0.3)
    fig.colorbar(im, ax=axes[:, :3].ravel().tolist(), label="velocity (km/s)", shrink=0.6, location="bottom")
    save_figure(fig, out)


def plot_gathers(study, out, vmin: float, vmax: float, dx: float) -> None:
    """Observed versus re-simulated versus residual middle-shot gathers of one test model, from
    each variant's seed-0 ``gathers.h5`` (written by ``fwi-attn physics``; nothing is simulated here).

    The test model is the showcase sample (:func:`fwi_attn.learn.evaluate.showcase_index`: the
    one with the most salt). Top row: the true model, its observed gather, and the residual of the
    mean-model baseline. Then one row per variant: its predicted model, the gather re-simulated
    from it with the test shard's exact acquisition, and the residual (observed - re-simulated).
    All gathers share the observed data's clip, so residual amplitudes compare directly with the data.
    """
    from fwi_attn.io.gathers import read_gathers

    shows = first_seed_files(study, RUN.gathers, read_gathers)
    if not shows:
        return placeholder(out, f"no {RUN.gathers} found")
    k = one_sample(shows, "physics")
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
    return finish(fig, out)


def reflection_rows(study, rows: list[dict]) -> None:
    """Add the reflection misfits of ``physics.json`` (mean over seeds of each run's mean, and the
    std over seeds) to the rows of :func:`fwi_attn.results.tables.physics_table`, where present."""
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
    from fwi_attn.results.tables import physics_table

    rows = physics_table(study)
    if not rows:
        return placeholder(out, f"no {RUN.physics} found")
    reflection_rows(study, rows)
    panels = [("rel_l2", "relative L2 data misfit (lower is better)"),
              ("trace_corr", "trace correlation (higher is better)")]
    if any("rel_l2_reflection" in r for r in rows):
        panels += [("rel_l2_reflection", "relative L2, reflections only (lower is better)"),
                   ("trace_corr_reflection", "trace correlation, reflections only (higher is better)")]
    # Two panels a row: the misfit beside the correlation, raw traces above reflections.
    nrows = len(panels) // 2
    fig, axes = plt.subplots(nrows, 2, figsize=(7.1, 3.3 * nrows + 0.4), constrained_layout=True, squeeze=False)
    x = np.arange(len(rows))
    for ax, (key, label) in zip(axes.ravel(), panels):
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
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=1, frameon=False)
        ax.set_xticks(x, [r["variant"] for r in rows], rotation=45, ha="right")
        ax.set_title(label)
        ax.grid(axis="y", alpha=0.3)
    n = sorted({r["n_seeds"] for r in rows})
    fig.suptitle(f"Physics check: predictions re-simulated against the recorded test gathers\n"
                 f"(mean over {'/'.join(map(str, n))} seed(s), error bars = std)")
    return finish(fig, out)

