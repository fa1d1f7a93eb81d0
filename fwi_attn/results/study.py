"""A study's results as one model: its runs, tables and statistics.

Everything here reads ``results/<study>/`` only (the files of ``docs/architecture.md``), so the
notebook ``notebooks/compare_attention.ipynb``, the figures (:mod:`fwi_attn.results.plots`) and
``fwi-attn report`` (:mod:`fwi_attn.results.report`) share one implementation:

* :func:`load_study` gathers every run's ``metrics.json`` (and ``physics.json``, ``refine.json``,
  ``history.csv``) plus the mean-model baseline;
* :func:`comparison_table` gives mean +/- std over seeds per variant, written by
  :func:`table_markdown` / :func:`write_table_csv`;
* :func:`compare_runs` and :func:`rank_variants` compare each variant with a reference
  (``none``) over training seeds and test samples together (a crossed random-effects model:
  t interval and test with Satterthwaite's degrees of freedom), Holm-corrected over the variants,
  with effect sizes and the smallest difference the study could detect
  (:func:`detectable_difference`);
* :func:`convergence` says from ``history.csv`` whether a run's validation MAE had stopped falling.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Metrics of metrics.json, in table order.
METRICS = ("mae", "mse", "rmse", "ssim", "ssim_valid", "mae_ms", "rmse_ms", "psnr", "salt_iou", "salt_boundary_f")
#: Metrics whose study figure is the whole test set's (metrics.json's ``pooled``, OpenFWI's way:
#: RMSE is the root of the MSE over every cell, not a mean of per-sample RMSEs).
POOLED = ("mae", "mse", "rmse", "ssim", "mae_ms", "rmse_ms")
#: Metrics where smaller is better (the others: larger is better).
LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "mae_ms", "rmse_ms"})
LABELS = {
    "rel_l2": "relative L2 data misfit",
    "trace_corr": "trace correlation",
    "mae": "MAE ([-1,1] scale)",
    "mse": "MSE ([-1,1] scale)",
    "rmse": "RMSE ([-1,1] scale)",
    "ssim": "SSIM",
    "ssim_valid": "SSIM (unpadded window)",
    "mae_ms": "MAE (m/s)",
    "rmse_ms": "RMSE (m/s)",
    "psnr": "PSNR (dB)",
    "salt_iou": "salt IoU",
    "salt_boundary_f": "salt boundary F",
}
#: The metrics the report's table shows by default (the OpenFWI scale plus the salt ones).
DEFAULT_METRICS = ("mae", "rmse", "ssim", "mae_ms", "salt_iou", "salt_boundary_f")
BASELINE = "mean"


@dataclass
class Study:
    """The results of one study directory.

    Attributes:
        dir: ``<results_dir>/<study>``.
        config: the default-filled config (``config.yaml`` written by the workflow), or ``{}``.
        metrics: ``{(variant, seed): metrics.json}``.
        mean: the mean-model baseline's metrics.json, or None.
        physics, refine: ``{(variant, seed): physics.json / refine.json}`` where present.
        variants: variants with at least one run, in the config's order.
    """

    dir: Path
    config: dict
    metrics: dict[tuple[str, int], dict]
    mean: dict | None
    physics: dict[tuple[str, int], dict] = field(default_factory=dict)
    refine: dict[tuple[str, int], dict] = field(default_factory=dict)
    variants: list[str] = field(default_factory=list)

    def seeds(self, variant: str) -> list[int]:
        return sorted(s for v, s in self.metrics if v == variant)

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.dir / variant / f"seed{seed}"

    def history(self, variant: str, seed: int) -> dict[str, np.ndarray]:
        """``history.csv`` of one run as ``{column: array}``."""
        return read_history(self.run_dir(variant, seed) / "history.csv")


class ReportError(ValueError):
    """A study's result files are unreadable or contradict each other."""


def read_json(path: str | os.PathLike) -> dict:
    """A result file's JSON object; a truncated or foreign file is a :class:`ReportError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: not a readable JSON result ({e}); rerun the step that writes it") from None
    if not isinstance(obj, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(obj).__name__}; rerun the step that writes it")
    return obj


def _run_identity(path: Path, m: dict) -> tuple[str, int]:
    """The (variant, seed) a ``metrics.json`` says it holds, checked against its folder and model."""
    from fwi_attn.data.store import file_sha256, run_folder_identity

    if not isinstance(m.get("variant"), str) or not isinstance(m.get("seed"), int) or "mean" not in m:
        raise ReportError(f"{path}: not an fwi-attn evaluate result (no variant, seed or mean); rerun `fwi-attn evaluate`")
    _check_scored_raw(path, m)
    own = (m["variant"], m["seed"])
    folder = run_folder_identity(path.parent)
    if folder != own:
        raise ReportError(f"{path} holds the results of {own[0]} seed {own[1]} but lies in the folder of "
                          f"{folder[0]} seed {folder[1]}; re-evaluate that run's model.pt into its own folder")
    model = path.parent / "model.pt"
    recorded = m.get("checkpoint_sha256")
    if recorded and model.is_file() and file_sha256(model) != recorded:
        raise ReportError(f"{path} was computed from another model than {model} (checkpoint hash differs): "
                          f"stale results; re-evaluate the run")
    return own


def _check_scored_raw(path: Path, m: dict) -> None:
    """Refuse results scored the old way (clipped predictions, unpadded SSIM, no pooled figures):
    their SSIM and RMSE columns would not be OpenFWI's."""
    if not isinstance(m.get("pooled"), dict) or "ssim_valid" not in m.get("per_sample", {}):
        raise ReportError(f"{path}: scored by an older fwi-attn (no pooled OpenFWI figures; SSIM without "
                          f"padding on clipped predictions); re-evaluate the run with `fwi-attn evaluate`")


def read_history(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A ``history.csv`` (epoch, train_loss, val_mae, val_ssim, lr, seconds) as float arrays."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r[k] not in ("", None) else np.nan for r in rows]) for k in rows[0]}


def _variant_order(config: dict) -> list[str]:
    return list(config.get("study", {}).get("variants", []))


def load_study(study_dir: str | os.PathLike, variants: list[str] | None = None,
               config: dict | None = None) -> Study:
    """Read every run of a study directory.

    Args:
        study_dir: ``<results_dir>/<study>``.
        variants: keep only these (default: every variant found, config order first).
        config: the study's config dict; default: ``<study_dir>/config.yaml`` (written by the
            workflow) when present.

    Runs are named by what their ``metrics.json`` says (variant, seed, checkpoint hash), which
    must agree with the folder it lies in and with the ``model.pt`` there.

    Raises:
        FileNotFoundError: the directory holds no ``<variant>/seed<k>/metrics.json`` at all.
        ReportError: a result file is unreadable, or says it belongs to another run or model.
    """
    root = Path(study_dir)
    cfg_path = root / "config.yaml"
    if config is None and cfg_path.exists():
        import yaml

        config = yaml.safe_load(cfg_path.read_text()) or {}
    config = dict(config or {})
    metrics, physics, refine = {}, {}, {}
    for path in sorted(root.glob("*/seed*/metrics.json")):
        m = read_json(path)
        variant, seed = _run_identity(path, m)
        if variants is not None and variant not in variants:
            continue
        metrics[(variant, seed)] = m
        for name, store in (("physics.json", physics), ("refine.json", refine)):
            if (path.parent / name).exists():
                store[(variant, seed)] = read_json(path.parent / name)
    if not metrics:
        raise FileNotFoundError(f"{root}: no <variant>/seed<k>/metrics.json found (run the study first)")
    mean_path = root / BASELINE / "metrics.json"
    mean = read_json(mean_path) if mean_path.exists() else None
    if mean is not None:
        _check_scored_raw(mean_path, mean)
    order = variants or _variant_order(config)
    found = {v for v, _ in metrics}
    ordered = [v for v in order if v in found] + sorted(found - set(order))
    return Study(root, config, metrics, mean, physics, refine, ordered)


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def run_figure(result: dict, metric: str) -> float | None:
    """A run's (or the baseline's) test-set figure of ``metric``: the pooled one for :data:`POOLED`
    metrics (OpenFWI's), else the mean over samples."""
    return result["pooled"][metric] if metric in POOLED else result["mean"][metric]


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
            row[m], row[f"{m}_std"] = _mean_std([run_figure(r, m) for r in runs])
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
    """The comparison table in markdown: ``mean ± std`` over seeds, best value in bold."""
    best = {}
    for m in metrics:
        vals = [r[m] for r in rows if r["variant"] != BASELINE]
        # No bold when every network ties (say, a salt IoU of 0 everywhere): nothing is best.
        if vals and min(vals) != max(vals):
            best[m] = min(vals) if m in LOWER_IS_BETTER else max(vals)
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
            if r["variant"] != BASELINE and best.get(m) == r[m]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table_csv(rows: list[dict], path: str | os.PathLike,
                    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS) -> None:
    """The comparison table as CSV (one column per metric mean and std), written atomically."""
    from fwi_attn.data.store import atomic_path

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


# ----------------------------------------------------------------------------- statistics


def seed_sample_values(study: Study, variant: str, metric: str = "mae") -> np.ndarray:
    """Per-sample ``metric`` of every run of a variant: ``[n_seeds, n_samples]`` float64 (seeds in
    order). The mean baseline (``"mean"``) is one seedless row."""
    if variant == BASELINE:
        if study.mean is None:
            raise KeyError("the study has no mean-model baseline (mean/metrics.json)")
        return np.asarray(study.mean["per_sample"][metric], dtype=float)[None]
    seeds = study.seeds(variant)
    if not seeds:
        raise KeyError(f"variant {variant!r} has no runs in {study.dir}")
    arrays = [np.asarray(study.metrics[(variant, s)]["per_sample"][metric], dtype=float) for s in seeds]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"{variant}: seeds were evaluated on different numbers of test samples "
                         f"({[len(a) for a in arrays]})")
    return np.stack(arrays)


def per_sample(study: Study, variant: str, metric: str = "mae") -> np.ndarray:
    """Per-test-sample ``metric`` of a variant, averaged over its seeds (``[n_samples]``)."""
    return seed_sample_values(study, variant, metric).mean(axis=0)


def _mean_squares(y: np.ndarray) -> tuple[float, float]:
    """Seed and residual mean squares of a ``[seeds, samples]`` block (two-way layout, no replication)."""
    a, n = y.shape
    seed_means, sample_means = y.mean(axis=1), y.mean(axis=0)
    ms_seed = n * float(np.var(seed_means, ddof=1))
    resid = y - seed_means[:, None] - sample_means[None, :] + y.mean()
    ms_res = float(np.sum(resid ** 2)) / ((a - 1) * (n - 1)) if n > 1 else 0.0
    return ms_seed, ms_res


def compare_runs(y: np.ndarray, z: np.ndarray, confidence: float = 0.95, z_trained: bool = True) -> dict:
    """Difference of two variants' mean metric over seeds and test samples together.

    ``y`` ``[a, n]`` and ``z`` ``[b, n]`` are per-sample values of ``a`` and ``b`` training runs
    (seeds) on the same ``n`` test samples. The model is a crossed random-effects one,
    ``y[s, i] = mu_y + u_i + v_yi + b_ys + e_ysi`` (test sample ``u``, its interaction with the
    variant ``v``, training run ``b`` with one variance for every variant, residual ``e``), whose
    estimand is ``mu_y - mu_z``: the difference expected over training randomness and over test
    samples like these. Its variance, ``Var(v)/n + Var(b) (1/a + 1/b) + Var(e_y)/(a n) +
    Var(e_z)/(b n)``, is estimated without bias from mean squares (method of moments): the paired
    per-sample differences give the sample terms; the seed and residual mean squares of both
    variants, pooled, give the training term (truncated at 0). A t interval and two-sided t test use
    Satterthwaite's degrees of freedom; with pure training variance this is Student's two-sample
    t test on the runs' means, with one run a side the paired t test over samples.

    Args:
        z_trained: False for a reference without training randomness (the mean-model baseline):
            no training term on its side.

    Returns:
        ``mean_diff`` (y - z), ``se``, ``df``, ``ci_low``, ``ci_high``, ``p_value``,
        ``effect_size`` (``mean_diff`` over the standard deviation of the per-sample differences),
        ``n`` samples, ``seeds`` (a, b), ``seed_variance`` (whether the training variance could be
        estimated: some side has two runs or more).
    """
    from scipy import stats

    y, z = np.atleast_2d(np.asarray(y, float)), np.atleast_2d(np.asarray(z, float))
    if y.shape[1] != z.shape[1]:
        raise ValueError(f"the variants were scored on {y.shape[1]} and {z.shape[1]} test samples")
    keep = ~(np.isnan(y).any(axis=0) | np.isnan(z).any(axis=0))  # salt metrics: samples without salt
    y, z = y[:, keep], z[:, keep]
    n = y.shape[1]
    d = y.mean(axis=0) - z.mean(axis=0)
    diff = float(d.mean()) if n else math.nan
    trained = [y] + ([z] if z_trained else [])
    blocks = [t for t in trained if len(t) > 1]
    out = {"mean_diff": diff, "n": int(n), "seeds": [int(y.shape[0]), int(z.shape[0])],
           "seed_variance": bool(blocks)}
    if n < 2:
        return {**out, "se": math.nan, "df": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                "p_value": math.nan, "effect_size": math.nan}
    parts = [(1.0 / n, float(np.var(d, ddof=1)), n - 1)]
    if blocks:
        squares = [_mean_squares(t) for t in blocks]
        df_seed = sum(len(t) - 1 for t in blocks)
        df_res = sum((len(t) - 1) * (n - 1) for t in blocks)
        ms_seed = sum((len(t) - 1) * ms for t, (ms, _) in zip(blocks, squares)) / df_seed
        ms_res = sum((len(t) - 1) * (n - 1) * mr for t, (_, mr) in zip(blocks, squares)) / df_res
        if ms_seed > ms_res:  # else no training variance beyond the noise: the estimate truncates at 0
            k = sum(1.0 / len(t) for t in trained) / n
            parts += [(k, ms_seed, df_seed), (-k, ms_res, df_res)]
    var = sum(k * m for k, m, _ in parts)
    if var <= 0:  # identical predictions: no uncertainty at all
        return {**out, "se": 0.0, "df": math.inf, "ci_low": diff, "ci_high": diff,
                "p_value": 1.0 if diff == 0 else 0.0, "effect_size": 0.0 if diff == 0 else math.copysign(math.inf, diff)}
    df = var ** 2 / sum((k * m) ** 2 / f for k, m, f in parts if f > 0)
    se = math.sqrt(var)
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    sd_d = float(np.std(d, ddof=1))
    return {**out, "se": se, "df": float(df), "ci_low": diff - half, "ci_high": diff + half, "p_value": p,
            "effect_size": diff / sd_d if sd_d > 0 else 0.0}


def _versus(y: np.ndarray, ref: np.ndarray, y_baseline: bool, ref_baseline: bool, confidence: float = 0.95) -> dict:
    """:func:`compare_runs` of ``y`` minus ``ref`` where either may be the untrained mean baseline."""
    if not y_baseline:
        return compare_runs(y, ref, confidence, z_trained=not ref_baseline)
    res = compare_runs(ref, y, confidence, z_trained=False)  # the trained side first, then negate
    return {**res, "mean_diff": -res["mean_diff"], "ci_low": -res["ci_high"], "ci_high": -res["ci_low"],
            "effect_size": -res["effect_size"], "seeds": res["seeds"][::-1]}


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over the comparisons), in input order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def detectable_difference(se: float, df: float, alpha: float, power: float = 0.8) -> float:
    """The smallest true difference a two-sided t test at level ``alpha`` detects with ``power``
    given the comparison's standard error (``(t_{1-alpha/2} + t_{power}) * se``)."""
    from scipy import stats

    if not (math.isfinite(se) and df > 0):
        return math.nan
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def rank_variants(study: Study, reference: str = "none", metric: str = "mae",
                  variants: list[str] | None = None, alpha: float = 0.05) -> list[dict]:
    """Variants (and the mean baseline) sorted best first on ``metric``, each compared with
    ``reference`` over seeds and test samples together (:func:`compare_runs`).

    Each entry: ``rank, variant, value`` (the study's figure: mean over seeds of the test mean;
    pooled RMSE for ``rmse``), ``std`` (over seeds) and, against ``reference`` (when it has runs):
    the :func:`compare_runs` fields, ``p_holm`` (Holm-adjusted over the networks compared with
    the reference; the mean baseline is outside that family and keeps its raw p),
    ``ci_low_adj``/``ci_high_adj`` (the interval at level ``1 - alpha/m``, Bonferroni's, so it
    excludes 0 only where Holm's first step rejects), ``detectable`` (the smallest difference
    detectable with 80% power at the corrected level), ``significant`` (the corrected interval
    excludes 0 and ``p_holm < alpha``) and ``better`` (significant, in the good direction).
    """
    rows = comparison_table(study, variants, metrics=(metric,))
    has_ref = bool(study.seeds(reference)) if reference != BASELINE else study.mean is not None
    out = [{"variant": r["variant"], "value": r[metric], "std": r[f"{metric}_std"]} for r in rows]
    if has_ref:
        ref = seed_sample_values(study, reference, metric)
        family = [e for e in out if e["variant"] not in (reference, BASELINE)]
        m = max(len(family), 1)
        for e in out:
            if e["variant"] == reference:
                continue
            level = 1 - alpha / (m if e["variant"] not in (reference, BASELINE) else 1)
            y = seed_sample_values(study, e["variant"], metric)
            e.update(_versus(y, ref, e["variant"] == BASELINE, reference == BASELINE))
            adj = _versus(y, ref, e["variant"] == BASELINE, reference == BASELINE, confidence=level)
            e["ci_low_adj"], e["ci_high_adj"] = adj["ci_low"], adj["ci_high"]
            e["detectable"] = detectable_difference(e["se"], e["df"], 1 - level)
        for e, p in zip(family, holm([e["p_value"] for e in family])):
            e["p_holm"] = p
        for e in out:
            if "mean_diff" in e:
                e.setdefault("p_holm", e["p_value"])
                e["significant"] = bool(e["p_holm"] < alpha and (e["ci_high_adj"] < 0 or e["ci_low_adj"] > 0))
                gain = e["mean_diff"] < 0 if metric in LOWER_IS_BETTER else e["mean_diff"] > 0
                e["better"] = e["significant"] and gain
    out.sort(key=lambda e: e["value"] if metric in LOWER_IS_BETTER else -e["value"])
    for i, e in enumerate(out, 1):
        e["rank"] = i
    return out


def ranking_markdown(ranking: list[dict], reference: str, metric: str = "mae") -> str:
    label = LABELS.get(metric, metric)
    lines = [f"| rank | variant | {label} | difference vs {reference} | 95% CI | Holm-corrected CI | "
             f"Holm p | effect size |",
             "|---:|---|---:|---:|---|---|---:|---:|"]
    for e in ranking:
        value = format_metric(e["value"], metric) + (f" ± {format_metric(e['std'], metric)}" if e.get("std") else "")
        if "mean_diff" in e and math.isfinite(e.get("se", math.nan)):
            diff = f"{e['mean_diff']:+.4f}"
            ci = f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]"
            adj = f"[{e['ci_low_adj']:+.4f}, {e['ci_high_adj']:+.4f}]"
            p = f"{e['p_holm']:.3g}"
            if e["significant"]:
                p, adj = f"**{p}**", f"**{adj}**"
            if not e["seed_variance"]:
                ci += " (samples only)"
            effect = f"{e['effect_size']:+.2f}"
        else:
            diff = "reference" if e["variant"] == reference else ""
            ci = adj = p = effect = ""
        lines.append(f"| {e['rank']} | {e['variant']} | {value} | {diff} | {ci} | {adj} | {p} | {effect} |")
    return "\n".join(lines) + "\n"


#: A run counts as converged when its validation MAE, fitted over the last quarter of its epochs
#: (at least 3), falls by less than this fraction of its level per epoch.
CONVERGED_SLOPE = 0.005


def convergence(history: dict[str, np.ndarray], planned_epochs: int | None = None) -> dict:
    """Whether a run's validation MAE had stopped falling, from its ``history.csv`` columns.

    The slope is a least-squares line through ``val_mae`` over the last ``max(3, epochs // 4)``
    epochs, relative to their mean (per epoch; -0.01 = falling 1% an epoch). A run that stopped
    before ``planned_epochs`` stopped on a plateau (``train.patience``) and counts as converged.

    Returns:
        ``epochs, best_epoch, best_val_mae, window, slope`` (None with fewer than 3 epochs),
        ``plateau`` (stopped early) and ``converged`` (True, False, or None when too short to say).
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
        slope = float(np.polyfit(np.arange(window), tail, 1)[0]) / float(tail.mean())
        out.update(window=window, slope=slope)
        out["converged"] = out["plateau"] or slope > -CONVERGED_SLOPE
    elif out["plateau"]:
        out["converged"] = True
    return out


def convergence_table(study: Study, variants: list[str] | None = None) -> list[dict]:
    """:func:`convergence` of every run with a ``history.csv``: ``{variant, seed, **convergence}``."""
    planned = study.config.get("train", {}).get("epochs")
    rows = []
    for v in variants or study.variants:
        for seed in study.seeds(v):
            path = study.run_dir(v, seed) / "history.csv"
            if path.exists():
                rows.append({"variant": v, "seed": seed, **convergence(read_history(path), planned)})
    return rows


def convergence_markdown(rows: list[dict]) -> str:
    lines = ["| variant | seed | epochs | best epoch | best val MAE | val MAE slope, last epochs | converged |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        slope = f"{100 * r['slope']:+.2f}% / epoch over {r['window']}" if r["slope"] is not None else ""
        state = {True: "yes", False: "**no**: still falling", None: "too few epochs"}[r["converged"]]
        if r["plateau"]:
            state = "yes (stopped on a plateau)"
        best = f"{r['best_val_mae']:.4f}" if r["best_val_mae"] is not None else ""
        lines.append(f"| {r['variant']} | {r['seed']} | {r['epochs']} | {r['best_epoch'] or ''} | {best} | "
                     f"{slope} | {state} |")
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
                row[key], row[f"{key}_std"] = _mean_std(vals)
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
