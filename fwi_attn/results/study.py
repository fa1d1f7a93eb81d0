"""A study's results as one model: its runs, tables and statistics.

Everything here reads ``results/<study>/`` only (the files of ``docs/architecture.md``), so the
notebook ``notebooks/compare_attention.ipynb``, the figures (:mod:`fwi_attn.results.plots`) and
``fwi-attn report`` (:mod:`fwi_attn.results.report`) share one implementation:

* :func:`load_study` gathers every run's ``metrics.json`` (and ``physics.json``, ``refine.json``,
  ``history.csv``) plus the mean-model baseline;
* :func:`comparison_table` gives mean +/- std over seeds per variant, written by
  :func:`table_markdown` / :func:`write_table_csv`;
* :func:`compare_variants` compares the study's arms with the reference and the controls over
  training seeds and test samples together, as one corrected family (the inference is
  :mod:`fwi_attn.results.stats`; what the comparisons are, :mod:`fwi_attn.results.design`);
* :func:`convergence` says from ``history.csv`` what a run's validation curve shows, under the
  learning-rate schedule it was trained with.

In a two-stage study (``study.confirm``) the results are the confirmation stage's: only runs on
its seeds are loaded, and ``Study.selection`` holds what the screening selected.
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

from fwi_attn.io.checked_json import verify_checked
from fwi_attn.io.history import read_history
from fwi_attn.results import stats

#: Metrics of metrics.json, in table order.
METRICS = ("mae", "mse", "rmse", "ssim", "ssim_valid", "mae_ms", "rmse_ms", "psnr", "salt_iou", "salt_iou_band",
           "salt_boundary_f")
#: Metrics whose study figure is the whole test set's (metrics.json's ``pooled``, OpenFWI's way:
#: RMSE is the root of the MSE over every cell, not a mean of per-sample RMSEs).
POOLED = ("mae", "mse", "rmse", "ssim", "mae_ms", "rmse_ms")
#: Metrics where smaller is better (the others: larger is better).
LOWER_IS_BETTER = frozenset({"mae", "mse", "rmse", "mae_ms", "rmse_ms", "rel_l2", "rel_l2_reflection"})
LABELS = {
    "rel_l2": "relative L2 data misfit (raw traces)",
    "trace_corr": "trace correlation (raw traces)",
    "rel_l2_reflection": "relative L2 data misfit (reflections)",
    "trace_corr_reflection": "trace correlation (reflections)",
    "mae": "MAE ([-1,1] scale)",
    "mse": "MSE ([-1,1] scale)",
    "rmse": "RMSE ([-1,1] scale)",
    "ssim": "SSIM",
    "ssim_valid": "SSIM (unpadded window)",
    "mae_ms": "MAE (m/s)",
    "rmse_ms": "RMSE (m/s)",
    "psnr": "PSNR (dB)",
    "salt_iou": "salt IoU",
    "salt_iou_band": "salt IoU (threshold band)",
    "salt_boundary_f": "salt boundary F",
}
#: The metrics the report's table shows by default (the OpenFWI scale plus the salt ones).
DEFAULT_METRICS = ("mae", "rmse", "ssim", "mae_ms", "salt_iou", "salt_iou_band", "salt_boundary_f")
BASELINE = "mean"


@dataclass
class Study:
    """The results of one study directory.

    Attributes:
        dir: ``<results_dir>/<study>``.
        config: the default-filled config (``config.yaml`` written by the workflow), or ``{}``.
        metrics: ``{(variant, seed): metrics.json}``.
        mean: the mean-model baseline's metrics.json, or None.
        physics, refine, attention: ``{(variant, seed): physics.json / refine.json /
            attention_salt.json}`` where present.
        variants: variants with at least one run, in the config's order (then the controls).
        selection: ``selection.json`` of a two-stage study, or None.
    """

    dir: Path
    config: dict
    metrics: dict[tuple[str, int], dict]
    mean: dict | None
    physics: dict[tuple[str, int], dict] = field(default_factory=dict)
    refine: dict[tuple[str, int], dict] = field(default_factory=dict)
    variants: list[str] = field(default_factory=list)
    selection: dict | None = None
    attention: dict[tuple[str, int], dict] = field(default_factory=dict)

    def seeds(self, variant: str) -> list[int]:
        return sorted(s for v, s in self.metrics if v == variant)

    def run_dir(self, variant: str, seed: int) -> Path:
        return self.dir / variant / f"seed{seed}"

    def history(self, variant: str, seed: int) -> dict[str, np.ndarray]:
        """``history.csv`` of one run as ``{column: array}``."""
        return read_history(self.run_dir(variant, seed) / "history.csv")


class ReportError(ValueError):
    """A study's result files are unreadable or contradict each other."""


#: The command that writes each JSON result a study reads.
JSON_WRITERS = {"metrics.json": "`fwi-attn evaluate`", "physics.json": "`fwi-attn physics`",
                "refine.json": "`fwi-attn refine`"}


def read_json(path: str | os.PathLike) -> dict:
    """A result file's JSON object (without its ``sha256`` field, once checked); a truncated,
    foreign or edited file is a :class:`ReportError` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{path}: not a readable JSON result ({e}); rerun the step that writes it") from None
    obj = verify_checked(obj, path, JSON_WRITERS.get(Path(path).name, "the step that writes it"), ReportError)
    if not isinstance(obj, dict):
        raise ReportError(f"{path}: expected a JSON object, got {type(obj).__name__}; rerun the step that writes it")
    return obj


def _run_identity(path: Path, m: dict) -> tuple[str, int]:
    """The (variant, seed) a ``metrics.json`` says it holds, checked against its folder and model."""
    from fwi_attn.data.store import file_sha256
    from fwi_attn.layout import parse_run_dir

    if not isinstance(m.get("variant"), str) or not isinstance(m.get("seed"), int) or "mean" not in m:
        raise ReportError(f"{path}: not an fwi-attn evaluate result (no variant, seed or mean); rerun `fwi-attn evaluate`")
    _check_scored_raw(path, m)
    own = (m["variant"], m["seed"])
    folder = parse_run_dir(path.parent)
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
    from fwi_attn.io.attention_salt import ATTENTION_SALT_FILE, read_attention_salt
    from fwi_attn.layout import selection_path
    from fwi_attn.results.design import read_selection, stage_seeds

    confirm_seeds = set(stage_seeds(config)["confirm"]) if config else set()
    metrics, physics, refine, attention = {}, {}, {}, {}
    for path in sorted(root.glob("*/seed*/metrics.json")):
        m = read_json(path)
        variant, seed = _run_identity(path, m)
        if variants is not None and variant not in variants:
            continue
        if confirm_seeds and seed not in confirm_seeds:  # a screening run scored by hand: not a result
            continue
        metrics[(variant, seed)] = m
        for name, store in (("physics.json", physics), ("refine.json", refine)):
            if (path.parent / name).exists():
                store[(variant, seed)] = read_json(path.parent / name)
        if (path.parent / ATTENTION_SALT_FILE).exists():
            attention[(variant, seed)] = read_attention_salt(path.parent / ATTENTION_SALT_FILE)
    if not metrics:
        raise FileNotFoundError(f"{root}: no <variant>/seed<k>/metrics.json found (run the study first)")
    mean_path = root / BASELINE / "metrics.json"
    mean = read_json(mean_path) if mean_path.exists() else None
    if mean is not None:
        _check_scored_raw(mean_path, mean)
    order = variants or _variant_order(config)
    found = {v for v, _ in metrics}
    ordered = [v for v in order if v in found] + sorted(found - set(order))
    selection = read_selection(selection_path(root)) if confirm_seeds and selection_path(root).exists() else None
    return Study(root, config, metrics, mean, physics, refine, ordered, selection, attention)


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
    """The comparison table in markdown: ``mean ± std`` over seeds, point estimates only (which
    differences hold is :func:`compare_variants`'s to say, so no cell is marked best)."""
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


def arm_values(study: Study, metric: str = "mae") -> dict[str, np.ndarray]:
    """:func:`seed_sample_values` of every arm of the study (and of the mean model, when scored)."""
    out = {v: seed_sample_values(study, v, metric) for v in study.variants}
    if study.mean is not None:
        out[BASELINE] = seed_sample_values(study, BASELINE, metric)
    return out


#: The physics check's per-sample data misfits (physics.json) that the report compares like the
#: velocity metrics: on the reflections (direct wave muted, late arrivals gained) and on raw traces.
DATA_MISFITS = ("rel_l2_reflection", "trace_corr_reflection", "rel_l2", "trace_corr")


def physics_values(study: Study, key: str) -> dict[str, np.ndarray]:
    """Per arm the ``[seeds, samples]`` per-sample data misfit ``key`` of its physics.json files
    (arms whose runs checked different test samples, or lack the key, are left out)."""
    out = {}
    for v in study.variants:
        runs = [study.physics.get((v, s)) for s in study.seeds(v)]
        if not runs or any(r is None or key not in r.get("per_sample", {}) for r in runs):
            continue
        if len({tuple(r["indices"]) for r in runs}) != 1:
            raise ReportError(f"{v}: its seeds' physics checks re-simulated different test samples; rerun the physics "
                              f"check with one physics.samples for every run")
        out[v] = np.array([[np.nan if x is None else x for x in r["per_sample"][key]] for r in runs], dtype=float)
    return out


def compare_variants(study: Study, metric: str = "mae", reference: str | None = None,
                     alpha: float = stats.ALPHA) -> list[dict]:
    """The study's family of comparisons on ``metric``, corrected together
    (:func:`fwi_attn.results.stats.compare_family`).

    The family (:func:`fwi_attn.results.design.family`): in a two-stage study each selected
    variant against the reference and against each control that applies to it; in a one-stage
    study every variant against the reference. The training variance is pooled over every trained
    arm of the study. A velocity metric's comparison gets an equivalence margin of ``study.margin``
    times the reference's figure (fixed in the config before the study ran); a data misfit
    (:data:`DATA_MISFITS`, from physics.json over the re-simulated samples) gets none.

    Returns:
        Per comparison the :func:`~fwi_attn.results.stats.compare_family` fields plus ``value``
        and ``value_against`` (the two arms' figures: :func:`run_figure` means over seeds, or the
        mean misfit over seeds and samples), ``isolates`` (what the arm compared with isolates)
        and ``metric``.
    """
    from fwi_attn.results.design import family

    reference = reference or study.config.get("study", {}).get("reference", "none")
    if metric in DATA_MISFITS:
        values = physics_values(study, metric)
        figure = {v: float(np.nanmean(y)) for v, y in values.items()}
        margins = None
    else:
        values = arm_values(study, metric)
        figure = {r["variant"]: r[metric] for r in comparison_table(study, metrics=(metric,))}
        share = float(study.config.get("study", {}).get("margin", 0.05))
        margins = {}
    if reference not in values:
        return []
    pairs = [c for c in family(study.config, study.variants, study.selection, reference)
             if c.arm in values and c.against in values]
    if not pairs:
        return []
    if margins is not None:
        margins = {(c.arm, c.against): share * abs(figure[reference]) for c in pairs}
    trained = stats.training_variance(values[v] for v in study.variants if v in values)
    out = stats.compare_family(values, pairs, lower_is_better=metric in LOWER_IS_BETTER,
                               margins=margins, alpha=alpha, training=trained)
    for e, c in zip(out, pairs):
        e.update(value=figure[c.arm], value_against=figure[c.against], isolates=c.isolates, metric=metric)
    return out


def comparisons_markdown(family: list[dict], to_ms: float | None = None) -> str:
    """The family's table: difference, its 95% and Bonferroni intervals, Holm p, the equivalence
    test and the detectable difference; a verdict per row that says only what the numbers hold."""
    if not family:
        return ""
    metric = family[0]["metric"]
    m = family[0]["m"]
    level = 100 * (1 - stats.ALPHA / m)
    lines = [f"| comparison | against what | {LABELS.get(metric, metric)} | difference | 95% CI | "
             f"Bonferroni {level:.4g}% CI | Holm p | equivalence margin, Holm p | detectable (80% power) | verdict |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---|"]
    for e in family:
        values = f"{format_metric(e['value'], metric)} vs {format_metric(e['value_against'], metric)}"
        if not math.isfinite(e.get("se", math.nan)):
            lines.append(f"| {e['arm']} − {e['against']} | {e['isolates']} | {values} | | | | | | | too few samples |")
            continue
        ms = f" ({e['mean_diff'] * to_ms:+.0f} m/s)" if to_ms else ""
        ci = f"[{e['ci_low']:+.4f}, {e['ci_high']:+.4f}]" + ("" if e["seed_variance"] else " (samples only)")
        adj = f"[{e['ci_low_adj']:+.4f}, {e['ci_high_adj']:+.4f}]"
        eq = (f"±{e['margin']:.4f}, {e['p_equivalence_holm']:.3g}" if e.get("p_equivalence_holm") is not None else "")
        detect = f"{e['detectable']:.4f}" + (f" ({e['detectable'] * to_ms:.0f} m/s)" if to_ms else "")
        lines.append(f"| {e['arm']} − {e['against']} | {e['isolates']} | {values} | {e['mean_diff']:+.4f}{ms} | {ci} | "
                     f"{adj} | {e['p_holm']:.3g} | {eq} | {detect} | {verdict(e)} |")
    return "\n".join(lines) + "\n"


def verdict(e: dict) -> str:
    """What one comparison supports: a confirmed difference, an equivalence, or nothing."""
    if not e.get("claimable", True):
        return "no claim: one seed an arm, training variance unknown"
    if e.get("significant"):
        return f"**{e['arm']} {'better' if e['better'] else 'worse'}**"
    if e.get("equivalent"):
        return f"**equivalent** within ±{e['margin']:.4f}"
    return "inconclusive"


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
            path = study.run_dir(v, seed) / "history.csv"
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


def attention_salt_table(study: Study, alpha: float = stats.ALPHA) -> list[dict]:
    """How well each variant's attention maps (and salt heads) pick out salt, per map, over every
    seed and test sample (each run's ``attention_salt.json``).

    Each row: ``variant, level, kind, stride``, and for ``salt`` and ``boundary``: the mean ROC AUC
    of the map as a detector of those cells with its 95% interval and its interval corrected for
    the number of maps scored (Bonferroni; ``*_low_adj``/``*_high_adj``), by
    :func:`fwi_attn.results.stats.mean_interval` over ``[seeds, samples]``; ``*_above_chance``:
    the corrected interval lies above 0.5. ``rho_iou``: Spearman's rank correlation of the
    per-sample salt AUC with the prediction's per-sample salt IoU, pooled over seeds (None where
    undefined).
    """
    from scipy.stats import spearmanr

    maps: dict[tuple[str, str], dict] = {}
    for v in study.variants:
        runs = [(s, study.attention.get((v, s))) for s in study.seeds(v)]
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
                np.asarray(study.metrics[(v, s)]["per_sample"]["salt_iou"], dtype=float)[r["indices"]]
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


# ----------------------------------------------------------------------------- generalisation

#: Depth bands of the bias-with-depth figures: the top, middle and bottom third of the rows.
DEPTH_BANDS = ("top", "middle", "bottom")


@dataclass
class TestSetResults:
    """One test set's results (``<study>/testsets/<name>/``).

    Attributes:
        name: the set's name (``transfer-<family>`` for a family-transfer set).
        metrics: ``{(variant, seed): metrics.json}`` of the runs scored on it.
        mean: the mean model's metrics.json on it, or None.
        compare: ``compare_sets.json`` (the training split against the set), or None.
    """

    __test__ = False  # not a pytest test class

    name: str
    metrics: dict[tuple[str, int], dict]
    mean: dict | None
    compare: dict | None
    dir: Path


def load_test_sets(study: Study) -> dict[str, TestSetResults]:
    """The results of every test set the study's config names (``study.test_sets``, then the
    family-transfer sets), in that order; a set without any scored run is left out."""
    from fwi_attn.layout import test_set_names, test_set_results

    out = {}
    for name in test_set_names(study.config.get("study", {})):
        root = test_set_results(study.dir, name)
        metrics = {}
        for path in sorted(root.glob("*/seed*/metrics.json")):
            m = read_json(path)
            if m.get("dataset") != name:
                raise ReportError(f"{path} holds results on {m.get('dataset')!r}, not on the test set {name!r}; "
                                  f"re-evaluate with --test-set {name}=FOLDER")
            metrics[_run_identity(path, m)] = m
        if not metrics:
            continue
        mean = read_json(root / BASELINE / "metrics.json") if (root / BASELINE / "metrics.json").exists() else None
        compare = read_json(root / "compare_sets.json") if (root / "compare_sets.json").exists() else None
        out[name] = TestSetResults(name, metrics, mean, compare, root)
    return out


def prediction_summary(paths: list[Path], salt_threshold: float) -> dict:
    """Salt area and depth bias of predictions files (pooled over every cell of every file).

    Returns ``{"salt_area_pred", "salt_area_true"}`` (fractions of the cells above
    ``salt_threshold``) and ``{"bias_<band>"}`` for :data:`DEPTH_BANDS`: the mean of prediction
    minus truth (m/s) over the cells of that third of the depth rows.
    """
    from fwi_attn.data.store import read_predictions

    pred_salt = true_salt = cells = 0
    bias = np.zeros(len(DEPTH_BANDS))
    band_cells = np.zeros(len(DEPTH_BANDS))
    for path in paths:
        p = read_predictions(path)
        pred, true = p.prediction.astype(np.float64), p.target.astype(np.float64)
        pred_salt += int((pred > salt_threshold).sum())
        true_salt += int((true > salt_threshold).sum())
        cells += true.size
        for k, rows in enumerate(np.array_split(np.arange(true.shape[1]), len(DEPTH_BANDS))):
            bias[k] += float((pred[:, rows] - true[:, rows]).sum())
            band_cells[k] += true[:, rows].size
    out = {"salt_area_pred": pred_salt / cells, "salt_area_true": true_salt / cells}
    out.update({f"bias_{b}": float(bias[k] / band_cells[k]) for k, b in enumerate(DEPTH_BANDS)})
    return out


def generalisation_table(study: Study, sets: dict[str, TestSetResults] | None = None,
                         salt_threshold: float | None = None) -> list[dict]:
    """In-distribution (the study's test split) versus each test set, per variant and for the mean model.

    Each row: ``variant, set, n_seeds, n_samples``; ``mae_ms`` and ``mae`` (metrics.json's
    ``pooled``: MAE over every cell of the set, mean over seeds); ``ratio_to_mean`` (that MAE over
    the mean model's pooled MAE on the same set); ``salt_iou`` (mean over samples, then seeds);
    and, for networks, :func:`prediction_summary` over the seeds' predictions files.
    """
    sets = load_test_sets(study) if sets is None else sets
    threshold = salt_threshold if salt_threshold is not None else \
        study.config.get("evaluate", {}).get("salt_threshold", 4200.0)
    sources = [("test", study.metrics, study.mean, study.dir)]
    sources += [(name, r.metrics, r.mean, r.dir) for name, r in sets.items()]
    rows = []
    for variant in [*study.variants, BASELINE]:
        for name, metrics, mean, root in sources:
            if variant == BASELINE:
                runs, files = ([mean] if mean is not None else []), []
            else:
                seeds = sorted(s for v, s in metrics if v == variant)
                runs = [metrics[(variant, s)] for s in seeds]
                files = [root / variant / f"seed{s}" / "predictions.h5" for s in seeds]
            if not runs:
                continue
            row = {"variant": variant, "set": name, "n_seeds": 0 if variant == BASELINE else len(runs),
                   "n_samples": runs[0].get("n_samples"),
                   "mae_ms": float(np.mean([r["pooled"]["mae_ms"] for r in runs])),
                   "mae": float(np.mean([r["pooled"]["mae"] for r in runs])),
                   "salt_iou": _nan_mean([r["mean"].get("salt_iou") for r in runs])}
            row["ratio_to_mean"] = row["mae"] / mean["pooled"]["mae"] if mean is not None else None
            if files and all(f.exists() for f in files):
                row.update(prediction_summary(files, threshold))
            rows.append(row)
    return rows


def _nan_mean(values) -> float | None:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None
