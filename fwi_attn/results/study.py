"""A study's results as one model: its runs, tables and statistics.

Everything here reads ``results/<study>/`` only (the files of ``docs/architecture.md``), so the
notebook ``notebooks/compare_attention.ipynb``, the figures (:mod:`fwi_attn.results.plots`) and
``fwi-attn report`` (:mod:`fwi_attn.results.report`) share one implementation:

* :func:`load_study` gathers every run's ``metrics.json`` (and ``physics.json``, ``refine.json``,
  ``history.csv``) plus the mean-model baseline;
* :func:`comparison_table` gives mean +/- std over seeds per variant, written by
  :func:`table_markdown` / :func:`write_table_csv`;
* :func:`paired_comparison` and :func:`rank_variants` compare each variant with a reference
  (``none``) sample by sample: per-sample MAE averaged over seeds, the mean difference with a 95%
  t-interval, and a Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`);
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
METRICS = ("mae", "rmse", "ssim", "mae_ms", "rmse_ms", "psnr", "salt_iou", "salt_boundary_f")
#: Metrics where smaller is better (the others: larger is better).
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mae_ms", "rmse_ms"})
LABELS = {
    "rel_l2": "relative L2 data misfit",
    "trace_corr": "trace correlation",
    "mae": "MAE ([-1,1] scale)",
    "rmse": "RMSE ([-1,1] scale)",
    "ssim": "SSIM",
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
    order = variants or _variant_order(config)
    found = {v for v, _ in metrics}
    ordered = [v for v in order if v in found] + sorted(found - set(order))
    return Study(root, config, metrics, mean, physics, refine, ordered)


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def comparison_table(study: Study, variants: list[str] | None = None,
                     metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS,
                     include_baseline: bool = True) -> list[dict]:
    """One row per variant: mean and std over seeds of each metric's test-set mean.

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
            row[m], row[f"{m}_std"] = _mean_std([r["mean"][m] for r in runs])
        rows.append(row)
    if include_baseline and study.mean is not None:
        row = {"variant": BASELINE, "n_seeds": 0, "n_params": 0, "time_per_sample_s": None}
        for m in metrics:
            row[m], row[f"{m}_std"] = float(study.mean["mean"][m]), None
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


def per_sample(study: Study, variant: str, metric: str = "mae") -> np.ndarray:
    """Per-test-sample ``metric`` of a variant, averaged over its seeds (``[n_samples]``).

    The mean baseline (``"mean"``) has a single, seedless set of values.
    """
    if variant == BASELINE:
        if study.mean is None:
            raise KeyError("the study has no mean-model baseline (mean/metrics.json)")
        return np.asarray(study.mean["per_sample"][metric], dtype=float)
    seeds = study.seeds(variant)
    if not seeds:
        raise KeyError(f"variant {variant!r} has no runs in {study.dir}")
    arrays = [np.asarray(study.metrics[(variant, s)]["per_sample"][metric], dtype=float) for s in seeds]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(f"{variant}: seeds were evaluated on different numbers of test samples "
                         f"({[len(a) for a in arrays]})")
    return np.mean(arrays, axis=0)


@dataclass
class PairedResult:
    """``variant`` minus ``reference`` on one metric, paired over test samples."""

    variant: str
    reference: str
    metric: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    statistic: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def t_interval(diff: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided t confidence interval for the mean of paired differences."""
    from scipy import stats

    n = len(diff)
    mean = float(np.mean(diff))
    if n < 2:
        return mean, mean
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(diff, ddof=1) / math.sqrt(n))
    return mean - half, mean + half


def paired_comparison(study: Study, variant: str, reference: str = "none", metric: str = "mae",
                      confidence: float = 0.95) -> PairedResult:
    """Paired comparison of ``variant`` with ``reference`` on per-sample ``metric``.

    Per-sample values are first averaged over each variant's seeds, so the pairs are the test
    samples (the same test split for every run). Returns the mean difference
    (variant - reference; negative MAE difference = variant better) with a t-interval, and the
    two-sided Wilcoxon signed-rank test of :func:`scipy.stats.wilcoxon` on the pairs (p = 1
    when every difference is zero).
    """
    from scipy import stats

    a, b = per_sample(study, variant, metric), per_sample(study, reference, metric)
    if len(a) != len(b):
        raise ValueError(f"{variant} has {len(a)} test samples but {reference} has {len(b)}")
    diff = a - b
    lo, hi = t_interval(diff, confidence)
    if np.all(diff == 0):
        stat, p = 0.0, 1.0
    else:
        res = stats.wilcoxon(a, b)
        stat, p = float(res.statistic), float(res.pvalue)
    return PairedResult(variant, reference, metric, len(diff), float(diff.mean()), lo, hi, p, stat)


def rank_variants(study: Study, reference: str = "none", metric: str = "mae",
                  variants: list[str] | None = None) -> list[dict]:
    """Variants (and the mean baseline) sorted best first on ``metric``, with paired statistics.

    Each entry: ``rank, variant, value`` (mean over seeds of the test mean), ``std`` (over
    seeds), and, against ``reference`` (when it has runs): ``mean_diff, ci_low, ci_high,
    p_value, n``.
    """
    rows = comparison_table(study, variants, metrics=(metric,))
    has_ref = bool(study.seeds(reference)) if reference != BASELINE else study.mean is not None
    out = []
    for r in rows:
        entry = {"variant": r["variant"], "value": r[metric], "std": r[f"{metric}_std"]}
        if has_ref and r["variant"] != reference:
            entry.update(paired_comparison(study, r["variant"], reference, metric).as_dict())
        out.append(entry)
    out.sort(key=lambda e: e["value"] if metric in LOWER_IS_BETTER else -e["value"])
    for i, e in enumerate(out, 1):
        e["rank"] = i
    return out


def ranking_markdown(ranking: list[dict], reference: str, metric: str = "mae") -> str:
    label = LABELS.get(metric, metric)
    lines = [f"| rank | variant | {label} | difference vs {reference} | 95% CI | Wilcoxon p |",
             "|---:|---|---:|---:|---|---:|"]
    for e in ranking:
        value = format_metric(e["value"], metric) + (f" ± {format_metric(e['std'], metric)}" if e.get("std") else "")
        if "mean_diff" in e:
            diff = f"{e['mean_diff']:+.4f}"
            ci = f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]"
            p = f"{e['p_value']:.3g}"
            if e["p_value"] < 0.05 and (e["ci_high"] < 0 or e["ci_low"] > 0):
                p = f"**{p}**"
        else:
            diff, ci, p = ("reference" if e["variant"] == reference else ""), "", ""
        lines.append(f"| {e['rank']} | {e['variant']} | {value} | {diff} | {ci} | {p} |")
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
