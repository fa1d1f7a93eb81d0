r"""A study's tables: mean +/- std over seeds, the comparisons, convergence, physics and attention,
as rows (dicts) and as markdown, CSV and LaTeX (booktabs, ready to ``\\input``).

The numbers in every format are rounded by one function (:func:`format_metric`), so the
report's markdown and a paper's ``.tex`` never disagree.
"""
from __future__ import annotations

import csv
import io
import os

import numpy as np

from fwi_attn.io.history import read_history
from fwi_attn.layout import BASELINE, RUN
from fwi_attn.results import stats
from fwi_attn.results.study import DEFAULT_METRICS, LABELS, ReportError, Study, mean_std, run_figure  # noqa: F401


def comparison_table(study: Study, variants: list[str] | None = None,
                     metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
                     include_baseline: bool = True) -> list[dict]:
    """One row per variant: mean and std over seeds of each metric's test-set figure
    (:func:`run_figure`).

    Each row: ``variant, n_seeds, n_params, time_per_sample_s`` and, per metric ``m``,
    ``m`` (mean over seeds) and ``m_std`` (sample std over seeds; 0 for one seed). The
    mean-model baseline comes last (``n_seeds`` 0, no std) when present.
    """
    rows = []
    for v in variants or study.variants:
        seeds = study.seeds(v)
        if not seeds:
            continue
        runs = [study.metrics[(v, s)] for s in seeds]
        row = {"variant": v, "n_seeds": len(seeds), "n_params": runs[0].get("n_params"),
               "time_per_sample_s": float(np.mean([r.get("time_per_sample_s", np.nan) for r in runs]))}
        for m in metrics:
            row[m], row[f"{m}_std"] = mean_std([run_figure(r, m) for r in runs])
        rows.append(row)
    if include_baseline and study.mean is not None:
        row = {"variant": BASELINE, "n_seeds": 0, "n_params": 0, "time_per_sample_s": None}
        for m in metrics:
            row[m], row[f"{m}_std"] = run_figure(study.mean, m), None
        rows.append(row)
    return rows


def format_metric(value: float | None, metric: str) -> str:
    if value is None or not np.isfinite(value):
        return ""
    if metric.endswith("_ms"):
        return f"{value:.1f}"
    if metric == "psnr":
        return f"{value:.2f}"
    return f"{value:.4f}"


def table_markdown(rows: list[dict], metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS) -> str:
    """The comparison table in markdown: ``mean ± std`` over seeds, point estimates only (which
    differences hold is :func:`fwi_attn.results.comparisons.compare_variants`'s to say, so no cell is marked best)."""
    head = ["variant", "seeds", "parameters", "ms / sample", *(LABELS.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        cells = [r["variant"] + (" (baseline)" if r["variant"] == BASELINE else ""),
                 str(r["n_seeds"]) if r["n_seeds"] else "",
                 f"{r['n_params']:,}" if r.get("n_params") else "",
                 f"{1000 * r['time_per_sample_s']:.2f}" if r.get("time_per_sample_s") else ""]
        for m in metrics:
            text = format_metric(r[m], m)
            if r.get(f"{m}_std") is not None and r["n_seeds"] > 1:
                text += f" ± {format_metric(r[f'{m}_std'], m)}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table_csv(rows: list[dict], path: str | os.PathLike,
                    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS) -> None:
    """The comparison table as CSV (one column per metric mean and std), written atomically."""
    from fwi_attn.io.files import atomic_path

    cols = ["variant", "n_seeds", "n_params", "time_per_sample_s"]
    for m in metrics:
        cols += [m, f"{m}_std"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in cols})
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text(buf.getvalue())



#: Under a constant learning rate, a run counts as converged when its validation MAE, fitted over
#: the last quarter of its epochs (at least 3), falls by less than this fraction of its level per epoch.
CONVERGED_SLOPE = 0.005
#: Schedules that anneal the learning rate to ~0 by the planned last epoch: every curve flattens at
#: their end whatever the network could still learn, so a flat tail there is no evidence.
ANNEALING = frozenset({"onecycle", "cosine"})


def convergence(history: dict[str, np.ndarray], planned_epochs: int | None = None,
                scheduler: str = "none") -> dict:
    """What a run's validation curve (``history.csv``) says about convergence, under its schedule.

    The evidence that counts: a stop on a plateau before ``planned_epochs`` (``train.patience``:
    validation stopped improving while the learning rate still allowed it), or, under a constant
    learning rate (``scheduler`` ``none``), a flat tail: the slope of a least-squares line through
    ``val_mae`` over the last ``max(3, epochs // 4)`` epochs, relative to their mean, above
    ``-CONVERGED_SLOPE`` per epoch. Under an annealing schedule (:data:`ANNEALING`) a run that ran
    its planned epochs is budget-limited whatever its tail looks like.

    Returns:
        ``epochs, best_epoch, best_val_mae, window, slope`` (None with fewer than 3 epochs),
        ``plateau`` (stopped early), ``converged`` (True, False, or None when too short to say)
        and ``verdict``: ``"converged"``, ``"budget-limited"`` or ``"too few epochs"``, with
        ``evidence`` saying why in words.
    """
    val = np.asarray(history.get("val_mae", []), dtype=float)
    val = val[np.isfinite(val)]
    epochs = int(len(val))
    out = {"epochs": epochs, "best_epoch": int(np.argmin(val)) + 1 if epochs else None,
           "best_val_mae": float(val.min()) if epochs else None, "window": 0, "slope": None,
           "plateau": bool(planned_epochs and 0 < epochs < planned_epochs), "converged": None}
    if epochs >= 3:
        window = max(3, epochs // 4)
        tail = val[-window:]
        out.update(window=window, slope=float(np.polyfit(np.arange(window), tail, 1)[0]) / float(tail.mean()))
    if out["plateau"]:
        out.update(converged=True, verdict="converged",
                   evidence=f"stopped on a validation plateau after {epochs} of {planned_epochs} epochs")
    elif scheduler in ANNEALING:
        out.update(converged=False, verdict="budget-limited",
                   evidence=f"ran its {epochs} planned epochs under {scheduler}, whose annealed tail flattens "
                            "any curve: no evidence of convergence")
    elif out["slope"] is None:
        out.update(verdict="too few epochs", evidence=f"{epochs} epoch(s): too few to fit a slope")
    elif out["slope"] > -CONVERGED_SLOPE:
        out.update(converged=True, verdict="converged",
                   evidence=f"flat tail at a constant learning rate ({100 * out['slope']:+.2f}% / epoch)")
    else:
        out.update(converged=False, verdict="budget-limited",
                   evidence=f"still falling {100 * -out['slope']:.2f}% / epoch at a constant learning rate")
    return out


def convergence_table(study: Study, variants: list[str] | None = None) -> list[dict]:
    """:func:`convergence` of every run with a ``history.csv``: ``{variant, seed, **convergence}``,
    under each variant's own schedule (``train.per_variant`` may change it)."""
    from fwi_attn.config import train_settings

    planned = study.config.get("train", {}).get("epochs")
    rows = []
    for v in variants or study.variants:
        scheduler = train_settings(study.config, v).scheduler if study.config.get("train") else "none"
        for seed in study.seeds(v):
            path = study.run_dir(v, seed) / RUN.history
            if path.exists():
                rows.append({"variant": v, "seed": seed, **convergence(read_history(path), planned, scheduler)})
    return rows


def convergence_summary(rows: list[dict]) -> str:
    """One sentence: how many runs converged, with what evidence, and what that means for the claims."""
    if not rows:
        return ""
    limited = [r for r in rows if r["verdict"] == "budget-limited"]
    if not limited:
        return f"All {len(rows)} compared runs show evidence of convergence ({rows[0]['evidence']})."
    return (f"{len(limited)} of {len(rows)} compared runs are budget-limited ({limited[0]['evidence']}): the "
            f"comparisons are of networks trained for this budget, not at convergence, and may change with "
            f"longer training.")


def convergence_markdown(rows: list[dict]) -> str:
    lines = ["| variant | seed | epochs | best epoch | best val MAE | val MAE slope, last epochs | verdict |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        slope = f"{100 * r['slope']:+.2f}% / epoch over {r['window']}" if r["slope"] is not None else ""
        best = f"{r['best_val_mae']:.4f}" if r["best_val_mae"] is not None else ""
        lines.append(f"| {r['variant']} | {r['seed']} | {r['epochs']} | {r['best_epoch'] or ''} | {best} | "
                     f"{slope} | {r['verdict']}: {r['evidence']} |")
    return "\n".join(lines) + "\n"


def attention_salt_table(study: Study, alpha: float = stats.ALPHA, screening: bool = False) -> list[dict]:
    """How well each variant's attention maps (and salt heads) pick out salt, per map, over every
    seed and test sample (each run's ``attention_salt.json``).

    Each row: ``variant, level, kind, stride``, and for ``salt`` and ``boundary``: the mean ROC AUC
    of the map as a detector of those cells with its 95% interval and its interval corrected for
    the number of maps scored (Bonferroni; ``*_low_adj``/``*_high_adj``), by
    :func:`fwi_attn.results.stats.mean_interval` over ``[seeds, samples]``; ``*_above_chance``:
    the corrected interval lies above 0.5. ``rho_iou``: Spearman's rank correlation of the
    per-sample salt AUC with the prediction's per-sample salt IoU, pooled over seeds (None where
    undefined).

    ``screening``: score the screening runs of a two-stage study instead
    (:attr:`~fwi_attn.results.study.Study.screening_attention`: every variant, the screening seeds;
    descriptive, corrected among themselves only); the default scores the study's own runs.
    """
    from scipy.stats import spearmanr

    if screening:
        attention, metrics = study.screening_attention, study.screening_metrics
        order = [v for v in study.config.get("study", {}).get("variants", []) if any(k[0] == v for k in attention)]
        variants = order + sorted({v for v, _ in attention} - set(order))

        def seeds_of(v):
            return sorted(s for w, s in attention if w == v)
    else:
        attention, metrics, variants, seeds_of = study.attention, study.metrics, study.variants, study.seeds
    maps: dict[tuple[str, str], dict] = {}
    for v in variants:
        runs = [(s, attention.get((v, s))) for s in seeds_of(v)]
        if not runs or any(r is None for _, r in runs):
            continue
        for key, level in runs[0][1]["levels"].items():
            if not all(key in r["levels"] for _, r in runs):
                continue
            row = maps.setdefault((v, key), {"variant": v, "level": key, "kind": level["kind"], "stride": level["stride"]})
            for what in ("salt", "boundary"):
                row[f"_{what}"] = np.array([[np.nan if x is None else x for x in r["levels"][key][f"{what}_auc"]]
                                            for _, r in runs], dtype=float)
            auc, iou = row["_salt"].ravel(), np.concatenate([
                np.asarray(metrics[(v, s)]["per_sample"]["salt_iou"], dtype=float)[r["indices"]]
                for s, r in runs])
            keep = np.isfinite(auc) & np.isfinite(iou)
            rho = None
            if keep.sum() >= 3 and np.ptp(auc[keep]) > 0 and np.ptp(iou[keep]) > 0:
                rho = float(spearmanr(auc[keep], iou[keep]).statistic)
            row["rho_iou"] = rho
    level = 1 - alpha / max(len(maps), 1)
    rows = []
    for row in maps.values():
        for what in ("salt", "boundary"):
            y = row.pop(f"_{what}")
            plain, adj = stats.mean_interval(y), stats.mean_interval(y, level)
            row.update({f"{what}_auc": plain["mean"], f"{what}_low": plain["ci_low"], f"{what}_high": plain["ci_high"],
                        f"{what}_low_adj": adj["ci_low"], f"{what}_high_adj": adj["ci_high"],
                        f"{what}_above_chance": bool(adj["ci_low"] > 0.5)})
        row["n_samples"], row["n_seeds"] = plain["n"], plain["seeds"]
        rows.append(row)
    return rows


def attention_salt_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    m = len(rows)
    lines = [f"| variant | map | kind | stride | salt AUC [95%] [Bonferroni over {m}] | boundary AUC [95%] "
             f"[Bonferroni] | Spearman rho, salt AUC vs salt IoU |", "|---|---|---|---:|---|---|---:|"]
    for r in rows:
        cells = []
        for what in ("salt", "boundary"):
            text = (f"{r[f'{what}_auc']:.3f} [{r[f'{what}_low']:.3f}, {r[f'{what}_high']:.3f}] "
                    f"[{r[f'{what}_low_adj']:.3f}, {r[f'{what}_high_adj']:.3f}]")
            cells.append(f"**{text}**" if r[f"{what}_above_chance"] else text)
        rho = "" if r["rho_iou"] is None else f"{r['rho_iou']:+.2f}"
        lines.append(f"| {r['variant']} | {r['level']} | {r['kind']} | {r['stride']} | {cells[0]} | {cells[1]} | {rho} |")
    return "\n".join(lines) + "\n"


def physics_table(study: Study, variants: list[str] | None = None) -> list[dict]:
    """Per variant, mean +/- std over seeds of the physics check (rel_l2, trace_corr)."""
    rows = []
    for v in variants or study.variants:
        runs = [study.physics[(v, s)] for s in study.seeds(v) if (v, s) in study.physics]
        if not runs:
            continue
        row = {"variant": v, "n_seeds": len(runs)}
        for key in ("rel_l2", "trace_corr", "baseline_rel_l2", "baseline_trace_corr", "true_rel_l2"):
            vals = [r["mean"][key] for r in runs if key in r.get("mean", {})]
            if vals:
                row[key], row[f"{key}_std"] = mean_std(vals)
        rows.append(row)
    return rows


def physics_markdown(rows: list[dict]) -> str:
    cols = [("rel_l2", "relative L2 data misfit"), ("trace_corr", "trace correlation"),
            ("baseline_rel_l2", "misfit of the mean model"), ("true_rel_l2", "misfit of the true model")]
    cols = [(k, t) for k, t in cols if any(k in r for r in rows)]
    lines = ["| variant | " + " | ".join(t for _, t in cols) + " |", "|---|" + "---:|" * len(cols)]
    for r in rows:
        cells = []
        for k, _ in cols:
            if k not in r:
                cells.append("")
                continue
            text = f"{r[k]:.4f}"
            if r["n_seeds"] > 1 and k in ("rel_l2", "trace_corr"):
                text += f" ± {r[f'{k}_std']:.4f}"
            cells.append(text)
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def refine_table(study: Study, variants: list[str] | None = None) -> list[dict]:
    """Per variant: FWI refinement before and after (``refine.json``'s runs), averaged over its
    samples and seeds: ``{variant, n_runs, <metric>_initial, <metric>_final}``."""
    rows = []
    for v in variants or study.variants:
        runs = [r for s in study.seeds(v) if (v, s) in study.refine for r in study.refine[(v, s)].get("runs", [])]
        if not runs:
            continue
        row = {"variant": v, "n_runs": len(runs)}
        for m in ("rel_l2", "trace_corr", "mae_ms", "ssim"):
            for when in ("initial", "final"):
                vals = [r[when][m] for r in runs if isinstance(r.get(when, {}).get(m), (int, float))]
                if vals:
                    row[f"{m}_{when}"] = float(np.mean(vals))
        rows.append(row)
    return rows


def refine_markdown(study: Study) -> str:
    rows = refine_table(study)
    if not rows:
        return ""
    metrics = [m for m in ("mae_ms", "ssim", "rel_l2", "trace_corr") if any(f"{m}_final" in r for r in rows)]
    lines = ["| variant | runs | " + " | ".join(f"{LABELS.get(m, m)} before → after" for m in metrics) + " |",
             "|---|---:|" + "---:|" * len(metrics)]
    for r in rows:
        cells = []
        for m in metrics:
            a, b = r.get(f"{m}_initial"), r.get(f"{m}_final")
            cells.append(f"{a:.4g} → {b:.4g}" if a is not None and b is not None else "")
        lines.append(f"| {r['variant']} | {r['n_runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
