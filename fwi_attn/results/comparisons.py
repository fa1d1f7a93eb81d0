"""The study's comparisons: every arm against the reference and its controls, corrected as one
family over training seeds and test samples (:mod:`fwi_attn.results.stats` does the inference),
and the table that says what each comparison supports."""
from __future__ import annotations

import math

import numpy as np

from fwi_attn.results import stats
from fwi_attn.results.study import DATA_MISFITS, LABELS, LOWER_IS_BETTER, Study, arm_values, physics_values
from fwi_attn.results.tables import comparison_table, format_metric


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
