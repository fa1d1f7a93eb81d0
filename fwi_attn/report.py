"""A study's results as tables and statistics, and the weekly-report bundle.

Everything here reads ``results/<study>/`` only (the files of ``docs/architecture.md``), so the
notebook ``notebooks/compare_attention.ipynb`` and ``fwi-attn report`` share one implementation:

* :func:`load_study` gathers every run's ``metrics.json`` (and ``physics.json``, ``refine.json``,
  ``history.csv``) plus the mean-model baseline;
* :func:`comparison_table` gives mean +/- std over seeds per variant, written by
  :func:`table_markdown` / :func:`write_table_csv`;
* :func:`paired_comparison` and :func:`rank_variants` compare each variant with a reference
  (``none``) sample by sample: per-sample MAE averaged over seeds, the mean difference with a 95%
  t-interval, and a Wilcoxon signed-rank test (:func:`scipy.stats.wilcoxon`);
* :func:`write_report` writes ``report/report.md`` and a self-contained ``report/report.html``.
"""
from __future__ import annotations

import base64
import csv
import datetime as _dt
import io
import json
import math
import os
import re
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
    from fwi_attn.store import file_sha256, run_folder_identity

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


def _fmt(value: float | None, metric: str) -> str:
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
            text = _fmt(r[m], m)
            if r.get(f"{m}_std") is not None and r["n_seeds"] > 1:
                text += f" ± {_fmt(r[f'{m}_std'], m)}"
            if r["variant"] != BASELINE and best.get(m) == r[m]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_table_csv(rows: list[dict], path: str | os.PathLike,
                    metrics: tuple[str, ...] | list[str] = DEFAULT_METRICS) -> None:
    """The comparison table as CSV (one column per metric mean and std), written atomically."""
    from fwi_attn.store import atomic_path

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
        value = _fmt(e["value"], metric) + (f" ± {_fmt(e['std'], metric)}" if e.get("std") else "")
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


def _physics_markdown(rows: list[dict]) -> str:
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


def _refine_markdown(study: Study) -> str:
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


# ----------------------------------------------------------------------------- the report


def config_summary(config: dict) -> str:
    """A few markdown bullet lines describing the study's setup."""
    st, s, m, t = config["study"], config["survey"], config["model"], config["train"]
    ds = config["datasets"][st["dataset"]]
    n = ds.get("samples", {})
    levels = ("at every level" if m.get("attn_levels") is None
              else f"at the {m['attn_levels']} coarsest levels (bottleneck included)")
    # A config from before the gain existed means OpenFWI's plain log transform.
    norm = config.get("normalize", {"gain_power": 0.0, "gain_scale": 1.0})
    gain = f"{norm['gain_scale']:g} (t/T)^{norm['gain_power']:g}" if norm["gain_power"] else f"{norm['gain_scale']:g}"
    return "\n".join([
        f"- **Study** `{st['name']}`: variants {', '.join(st['variants'])}; seeds {st['seeds']}; "
        f"device {st['device']}, {st['threads']} thread(s) per job.",
        f"- **Dataset** `{st['dataset']}` (family {ds['family']}, seed {ds['seed']}): "
        f"{n.get('train')} train / {n.get('val')} val / {n.get('test')} test models.",
        f"- **Survey**: {s['nz']} x {s['nx']} cells at {s['dx']:g} m "
        f"({(s['nx'] - 1) * s['dx'] / 1000:g} x {(s['nz'] - 1) * s['dx'] / 1000:g} km); "
        f"{s['n_shots']} shots, {s['n_receivers']} receivers; {s['nt']} samples at {s['dt'] * 1000:g} ms "
        f"({s['nt'] * s['dt']:g} s); Ricker {s['freq']:g} Hz.",
        f"- **Velocity range** {config['geology']['vmin']:g} to {config['geology']['vmax']:g} m/s "
        f"(the [-1, 1] scale of MAE/RMSE).",
        f"- **Networks**: UNet width {m['width']}, depth {m['depth']}, attention {levels}; InversionNet "
        f"at {m.get('width_mult', 1.0):g}x OpenFWI's widths; input sign(x) log1p({gain} |x|), min-max "
        f"scaled; training {t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']:g}, loss {t['loss']}, "
        f"scheduler {t['scheduler']}.",
    ])


def _figure(title: str, path: Path, report_dir: Path, caption: str = "") -> str:
    if not path.exists():
        return ""
    rel = os.path.relpath(path, report_dir)
    return f"### {title}\n\n![{title}]({rel})\n\n{caption + chr(10) + chr(10) if caption else ''}"


def build_markdown(study: Study, reference: str | None = None, title: str | None = None,
                   date: _dt.date | None = None) -> str:
    """The weekly report as markdown; images are linked relative to ``<study>/report/``."""
    from fwi_attn import __version__
    from fwi_attn.layout import comparison_figure_paths, run_figure_paths

    config = study.config
    st = config.get("study", {})
    reference = reference or st.get("reference", "none")
    title = title or st.get("title", "fwi-attn weekly report")
    date = date or _dt.date.today()
    report_dir = study.dir / "report"
    figs = comparison_figure_paths(study.dir)
    rows = comparison_table(study)
    ranking = rank_variants(study, reference, "mae")
    parts = [f"# {title}\n", f"*{date.isoformat()} — study `{study.dir.name}`, fwi-attn {__version__}*\n"]

    networks = [e for e in ranking if e["variant"] != BASELINE]
    if networks:
        best = networks[0]
        line = (f"**Best variant: `{best['variant']}`**, test MAE {_fmt(best['value'], 'mae')} on the [-1, 1] "
                f"scale (mean over {len(study.seeds(best['variant']))} seed(s))")
        if study.mean is not None:
            mean_mae = study.mean["mean"]["mae"]
            ratio = best["value"] / mean_mae
            verdict = ("the networks learn from the data" if ratio < 1 else
                       "no network beats predicting the mean model: train longer or on more data")
            line += (f", against {_fmt(mean_mae, 'mae')} for the mean-model baseline "
                     f"(ratio {ratio:.2f}: {verdict})")
        parts.append(line + ".\n")
        if "mean_diff" in best:
            parts.append(f"Against `{reference}`: MAE difference {best['mean_diff']:+.4f} "
                         f"(95% CI [{best['ci_low']:+.4f}, {best['ci_high']:+.4f}], Wilcoxon p = "
                         f"{best['p_value']:.3g}, {best['n']} test samples).\n")
    if config:
        parts += ["## Setup\n", config_summary(config) + "\n"]
    parts.append(_figure("Dataset preview", study.dir / "figures" / "dataset_preview.png", report_dir,
                         "Training models (top, km/s) and their middle-shot gathers (bottom)."))
    parts += ["## Comparison\n",
              "Test-set means; mean ± sample standard deviation over seeds; best network in bold. "
              "MAE/RMSE on OpenFWI's [-1, 1] velocity scale, MAE (m/s) in physical units.\n",
              table_markdown(rows)]
    parts += ["## Ranking\n",
              f"Variants ranked by test MAE. Differences are variant minus `{reference}` over the paired "
              f"test samples (per-sample MAE averaged over seeds first); negative means better than "
              f"`{reference}`. 95% CI: t-interval of the mean difference; p: two-sided Wilcoxon "
              f"signed-rank test. Bold p: CI excludes 0 and p < 0.05.\n",
              ranking_markdown(ranking, reference)]
    parts.append("## Figures\n")
    for key, title_, caption in (
        ("bars", "Metrics by variant", "Bars: mean over seeds; error bars: standard deviation over seeds; "
                                       "dashed line: mean-model baseline."),
        ("cost", "Accuracy versus cost", "Test MAE against parameters and inference time per sample."),
        ("curves", "Training curves", "Validation MAE per epoch: line = mean over seeds, band = min to max."),
        ("predictions", "Predictions", "The same test models predicted by each variant (seed 0), km/s."),
        ("attention", "Attention maps", "Each variant's spatial attention maps (seed 0) for the test model "
                                        "with the most salt; 0 = suppressed, 1 = passed; white line: true salt "
                                        "outline. Variants with channel attention only have no map."),
        ("gathers", "Data fit", "The same test model: observed, re-simulated (from each variant's prediction) "
                                "and residual gathers of the middle shot, one clip for all panels; top right: "
                                "the mean model's residual."),
        ("physics", "Physics check", "Relative L2 misfit of re-simulated data (lower is better)."),
    ):
        parts.append(_figure(title_, figs[key], report_dir, caption))
    phys = physics_table(study)
    if phys:
        parts += ["### Data misfit\n", _physics_markdown(phys)]
    refine = _refine_markdown(study)
    if refine:
        parts += ["### FWI refinement\n", "Full-waveform inversion started from each variant's predictions "
                  "(`fwi-attn refine`); mean over refined samples and seeds.\n", refine]
    examples = []
    for v in study.variants:
        seeds = study.seeds(v)
        if seeds:
            path = run_figure_paths(study.dir, v, seeds[0])["examples"]
            examples.append(_figure(f"{v}, seed {seeds[0]}", path, report_dir))
    if any(examples):
        parts += ["## Appendix: examples per variant\n",
                  "True model, prediction and error (prediction - truth) for a few test models.\n", *examples]
    parts.append("Interactive comparison: `compare_attention.ipynb` in this folder.\n")
    return "\n".join(p for p in parts if p)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1250px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; }
td { white-space: nowrap; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
h1 { border-bottom: 2px solid #333; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.6em; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def markdown_to_html(md: str, base_dir: str | os.PathLike, title: str = "report") -> str:
    """Render markdown to a self-contained HTML page: every local image is embedded as base64."""
    import markdown

    body = markdown.markdown(md, extensions=["tables", "fenced_code"])
    base = Path(base_dir)

    def embed(match: re.Match) -> str:
        src = match.group(2)
        if src.startswith(("data:", "http:", "https:")):
            return match.group(0)
        path = (base / src).resolve()
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{match.group(1)}data:image/png;base64,{data}{match.group(3)}'

    body = re.sub(r'(<img[^>]*?src=")([^"]+)(")', embed, body)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_report(study_dir: str | os.PathLike, reference: str | None = None,
                 title: str | None = None, config: dict | None = None) -> tuple[Path, Path]:
    """Write ``<study_dir>/report/report.md`` and ``report.html`` (atomically); return both paths."""
    from fwi_attn.store import atomic_path

    study = load_study(study_dir, config=config)
    md = build_markdown(study, reference, title)
    report_dir = study.dir / "report"
    md_path, html_path = report_dir / "report.md", report_dir / "report.html"
    with atomic_path(md_path, suffix=".md") as tmp:
        tmp.write_text(md)
    page_title = title or study.config.get("study", {}).get("title", "fwi-attn weekly report")
    with atomic_path(html_path, suffix=".html") as tmp:
        tmp.write_text(markdown_to_html(md, report_dir, page_title))
    return md_path, html_path


def command_report(parser):
    from fwi_attn.config import add_config_argument

    add_config_argument(parser)
    parser.add_argument("--reference", default=None,
                        help="variant to rank against (default: the config's study.reference)")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.layout import study_dir

        cfg = load_config(args.config)
        md, html = write_report(study_dir(cfg), args.reference or cfg.study.reference, cfg.study.title,
                                config=cfg.to_dict())
        print(f"wrote {md}\nwrote {html}")

    return run
