"""A study's results as one model: its runs, their per-sample values and the comparisons.

Everything here reads ``results/<study>/`` only (the files of ``docs/architecture.md``), so the
notebook ``notebooks/compare_attention.ipynb``, the figures (:mod:`fwi_attn.results.figures`) and
``fwi-attn report`` (:mod:`fwi_attn.results.report`) share one implementation:

* :func:`load_study` gathers every run's metrics (and physics check, refinement, training history,
  attention scores) plus the mean-model baseline;
* :func:`fwi_attn.results.comparisons.compare_variants` compares the study's arms with the reference and the controls over
  training seeds and test samples together, as one corrected family (the inference is
  :mod:`fwi_attn.results.stats`; what the comparisons are, :mod:`fwi_attn.results.design`);
* the tables (mean +/- std over seeds, convergence, physics, attention) are
  :mod:`fwi_attn.results.tables`'s; the other test sets, :mod:`fwi_attn.results.generalisation`'s.

In a two-stage study (``study.confirm``) the results are the confirmation stage's: only runs on
its seeds enter :attr:`Study.metrics`, and ``Study.selection`` holds what the screening selected.
The screening runs' attention scores, where the workflow evaluated them, are kept apart in
:attr:`Study.screening_attention` (descriptive, one stage's seeds; never in a comparison).

The metric names are :mod:`fwi_attn.learn.metrics`'s, which this module (and torch-free callers)
import without torch.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fwi_attn.io.checked_json import verify_checked
from fwi_attn.io.history import read_history
from fwi_attn.layout import BASELINE, RUN, baseline_dir, parse_run_dir, run_dir
from fwi_attn.learn.metrics import METRICS, POOLED

__all__ = ["METRICS", "POOLED", "LOWER_IS_BETTER", "LABELS", "DEFAULT_METRICS", "BASELINE", "Study", "ReportError",
           "read_json", "load_study", "mean_std", "run_figure", "seed_sample_values", "per_sample", "arm_values",
           "DATA_MISFITS", "physics_values"]

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
        screening_attention: ``{(variant, seed): attention_salt.json}`` of a two-stage study's
            screening runs (seeds outside the confirmation stage) where they were scored on the
            test split: descriptive only, never part of :attr:`metrics` nor of a comparison.
        screening_metrics: those screening runs' metrics.json (for the attention scores' IoU).
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
    screening_attention: dict[tuple[str, int], dict] = field(default_factory=dict)
    screening_metrics: dict[tuple[str, int], dict] = field(default_factory=dict)

    def seeds(self, variant: str) -> list[int]:
        return sorted(s for v, s in self.metrics if v == variant)

    def run_dir(self, variant: str, seed: int) -> Path:
        return run_dir(self.dir, variant, seed)

    def history(self, variant: str, seed: int) -> dict[str, np.ndarray]:
        """``history.csv`` of one run as ``{column: array}``."""
        return read_history(self.run_dir(variant, seed) / RUN.history)


class ReportError(ValueError):
    """A study's result files are unreadable or contradict each other."""


#: The command that writes each JSON result a study reads.
JSON_WRITERS = {RUN.metrics: "`fwi-attn evaluate`", RUN.physics: "`fwi-attn physics`",
                RUN.refine: "`fwi-attn refine`"}


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


def run_identity(path: Path, m: dict) -> tuple[str, int]:
    """The (variant, seed) a ``metrics.json`` says it holds, checked against its folder and model."""
    from fwi_attn.io.files import file_sha256


    if not isinstance(m.get("variant"), str) or not isinstance(m.get("seed"), int) or "mean" not in m:
        raise ReportError(f"{path}: not an fwi-attn evaluate result (no variant, seed or mean); rerun `fwi-attn evaluate`")
    check_scored_raw(path, m)
    own = (m["variant"], m["seed"])
    folder = parse_run_dir(path.parent)
    if folder != own:
        raise ReportError(f"{path} holds the results of {own[0]} seed {own[1]} but lies in the folder of "
                          f"{folder[0]} seed {folder[1]}; re-evaluate that run's {RUN.model} into its own folder")
    model = path.parent / RUN.model
    recorded = m.get("checkpoint_sha256")
    if recorded and model.is_file() and file_sha256(model) != recorded:
        raise ReportError(f"{path} was computed from another model than {model} (checkpoint hash differs): "
                          f"stale results; re-evaluate the run")
    return own


def check_scored_raw(path: Path, m: dict) -> None:
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
    from fwi_attn.io.attention_salt import read_attention_salt
    from fwi_attn.layout import selection_path
    from fwi_attn.results.design import read_selection, stage_seeds

    confirm_seeds = set(stage_seeds(config)["confirm"]) if config else set()
    metrics, physics, refine, attention, screening, screening_metrics = {}, {}, {}, {}, {}, {}
    for path in sorted(root.glob(f"*/seed*/{RUN.metrics}")):
        m = read_json(path)
        variant, seed = run_identity(path, m)
        if variants is not None and variant not in variants:
            continue
        if confirm_seeds and seed not in confirm_seeds:
            # A screening run scored on test: its attention is described, its accuracy never compared.
            if (path.parent / RUN.attention_salt).exists():
                screening[(variant, seed)] = read_attention_salt(path.parent / RUN.attention_salt)
                screening_metrics[(variant, seed)] = m
            continue
        metrics[(variant, seed)] = m
        for name, store in ((RUN.physics, physics), (RUN.refine, refine)):
            if (path.parent / name).exists():
                store[(variant, seed)] = read_json(path.parent / name)
        if (path.parent / RUN.attention_salt).exists():
            attention[(variant, seed)] = read_attention_salt(path.parent / RUN.attention_salt)
    if not metrics:
        raise FileNotFoundError(f"{root}: no <variant>/seed<k>/{RUN.metrics} found (run the study first)")
    mean_path = baseline_dir(root) / RUN.metrics
    mean = read_json(mean_path) if mean_path.exists() else None
    if mean is not None:
        check_scored_raw(mean_path, mean)
    order = variants or _variant_order(config)
    found = {v for v, _ in metrics}
    ordered = [v for v in order if v in found] + sorted(found - set(order))
    selection = read_selection(selection_path(root)) if confirm_seeds and selection_path(root).exists() else None
    return Study(root, config, metrics, mean, physics, refine, ordered, selection, attention, screening,
                 screening_metrics)


def mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def run_figure(result: dict, metric: str) -> float | None:
    """A run's (or the baseline's) test-set figure of ``metric``: the pooled one for :data:`POOLED`
    metrics (OpenFWI's), else the mean over samples."""
    return result["pooled"][metric] if metric in POOLED else result["mean"][metric]


def seed_sample_values(study: Study, variant: str, metric: str = "mae") -> np.ndarray:
    """Per-sample ``metric`` of every run of a variant: ``[n_seeds, n_samples]`` float64 (seeds in
    order). The mean baseline (``"mean"``) is one seedless row."""
    if variant == BASELINE:
        if study.mean is None:
            raise KeyError(f"the study has no mean-model baseline (mean/{RUN.metrics})")
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
