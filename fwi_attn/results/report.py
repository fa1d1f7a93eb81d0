"""The weekly-report bundle: ``report/report.md`` and a self-contained ``report/report.html``,
built from a study's results (:mod:`fwi_attn.results.study`) and figures."""
from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import re
from pathlib import Path

import numpy as np

from fwi_attn.layout import BASELINE, RUN, run_dir
from fwi_attn.provenance import provenance, provenance_markdown
from fwi_attn.results import captions, stats
from fwi_attn.results.comparisons import compare_variants, comparisons_markdown
from fwi_attn.results.generalisation import (
    distances_markdown,
    generalisation_markdown,
    generalisation_table,
    load_test_sets,
    transfer_markdown,
)
from fwi_attn.results.study import Study, load_study, run_figure, seed_sample_values
from fwi_attn.results.tables import (
    attention_salt_markdown,
    attention_salt_table,
    comparison_table,
    convergence_markdown,
    convergence_summary,
    convergence_table,
    physics_markdown,
    physics_table,
    refine_markdown,
    table_markdown,
)

#: InversionNet's published test figures (Deng et al. 2022, OpenFWI, arXiv:2111.02926, Table of
#: InversionNet results: MAE, RMSE on the [-1, 1] scale, SSIM), by the family of ours that imitates
#: each dataset: full size, 24,000 training models, 120 epochs.
OPENFWI_PUBLISHED = {
    "flatvel": ("FlatVel-A", {"mae": 0.0131, "rmse": 0.0211, "ssim": 0.9895}),
    "curvevel": ("CurveVel-A", {"mae": 0.0685, "rmse": 0.1273, "ssim": 0.8074}),
}

METHOD_TEXT = (
    "**How the numbers are computed.** Every model is scored on its raw output (no clipping), as "
    "OpenFWI's `test.py` does. MAE and RMSE are on OpenFWI's [-1, 1] velocity scale "
    "(`2 (v - vmin) / (vmax - vmin) - 1`) over every cell of the test set: RMSE is the square root "
    "of that pooled MSE. SSIM is OpenFWI's: velocities mapped to [0, 1], an 11 x 11 Gaussian window "
    "(sigma 1.5) with zero padding, C1 = 0.01², C2 = 0.03², the mean of the full map. MAE (m/s) "
    "is the same MAE in physical units. Salt IoU and boundary F use the cells above "
    "`evaluate.salt_threshold`; samples where neither truth nor prediction has salt are left out. "
    "Salt IoU (threshold band) averages the IoU over 20 thresholds spanning each true model's gap "
    "between its fastest sediment and its slowest salt, so a right-shaped body predicted a little slow "
    "is not scored 0: it measures shape apart from calibration (`fwi_attn.learn.metrics`). "
    f"`{RUN.metrics}` keeps every per-sample value, the same figures with predictions clipped to "
    "[vmin, vmax], and the unpadded SSIM (`ssim_valid`).\n")

STATS_TEXT = (
    "Each row is one comparison of the family whose results this report states: arm minus the arm it "
    "is compared with, in test MAE on the [-1, 1] scale (negative: the first arm is better). Differences "
    "are estimated over training seeds and test samples together (a crossed random-effects model: the "
    "per-sample differences give the test-sample variance; one training variance, pooled over all "
    "{arms} trained arms, {seed_df} degrees of freedom), with t intervals on Satterthwaite's degrees of "
    "freedom. Holm's procedure corrects the {m} comparison(s) together (adjusted p); the Bonferroni "
    "interval at level 1 - 0.05/{m} holds for all of them at once. A difference is confirmed where Holm's "
    "p is below 0.05 and the Bonferroni interval excludes 0; equivalence where two one-sided tests "
    "(Holm-adjusted) put the difference within the margin, {margin:g} x `{reference}`'s MAE, fixed in the "
    "config (`study.margin`) before the study ran. Anything else is inconclusive, with the smallest "
    "difference this design detects at 80% power at the corrected level. `docs/study.md` explains the "
    "protocol.\n")

MISFIT_TEXT = (
    "The physics check re-simulates each run's first {n} test predictions with the study's survey and "
    "compares the data with the observed gathers on the **reflections**: the direct wave and first "
    "arrivals muted (zero before the direct arrival through the true model's top row plus the "
    "wavelet's length, a half-cosine taper after), late arrivals gained by (t/T)^2, so that the misfit "
    "measures the data the network had to explain (`fwi_attn.physics.check.reflection_window`). Relative "
    "L2 misfit: ||w (d_pred - d_obs)|| / ||w d_obs|| per sample (lower is better). The same inference and "
    "Holm correction over the {m} comparison(s) as for MAE; no equivalence margin is set for misfits.\n")

ATTENTION_TEXT = (
    "Does the attention look at the salt? Each spatial attention map (and each salt head's predicted "
    "salt) is scored, on every test sample of every compared run, by its ROC AUC as a detector of salt "
    "cells (true velocity above `evaluate.salt_threshold`) and of salt-boundary cells: 0.5 means the map "
    "does not separate them from the rest, 1 that it ranks every such cell above every other. Means over "
    "seeds and samples with their 95% interval and their interval corrected over all {m} maps (Bonferroni); "
    "**bold**: the corrected interval lies above 0.5. Spearman's rho relates a map's per-sample salt AUC to "
    "the prediction's per-sample salt IoU (pooled over seeds; association, not cause).\n")


SCREENING_ATTENTION_TEXT = (
    "The same scores for every variant's screening runs (seeds {seeds}, one stage of the study, scored on the "
    "test split for this section only): descriptive, corrected among these {m} maps alone, and not part of "
    "the confirmatory comparisons above, which use the confirmation stage's fresh seeds.\n")

GENERALISATION_TEXT = (
    "Each network scored on the study's own test split (`test`, in-distribution) and on each test "
    "set: `study.test_sets` (other velocity models, `fwi-attn testset`) and `transfer-<family>` "
    "(models of another generator family, `study.transfer_families`), all simulated with the study's "
    f"survey. **How the numbers are computed.** MAE is {RUN.metrics}'s `pooled` figure: the mean "
    "absolute error over every cell of the set, in m/s, on raw predictions, then the mean over seeds. "
    "Ratio: that MAE (on OpenFWI's [-1, 1] scale) over the mean model's on the same set (the training "
    "split's mean model; below 1 the network beats it). Salt IoU: mean over samples with salt in truth "
    "or prediction, then over seeds. Salt area: the fraction of all cells above "
    "`evaluate.salt_threshold`, predicted / true. Bias: the mean of prediction minus truth (m/s) over "
    "the top, middle and bottom third of the depth rows, pooled over every cell of every seed's "
    "predictions.\n")


def showcase_variant(study: Study) -> str | None:
    """The variant the test-set figure shows: the first one the screening selected, or (one-stage
    study) the one with the lowest point estimate of test MAE, which is not a claim that it is best."""
    if study.selection and study.selection["selected"][0] in study.variants:
        return study.selection["selected"][0]
    rows = [r for r in comparison_table(study, include_baseline=False) if np.isfinite(r["mae"])]
    return min(rows, key=lambda r: r["mae"])["variant"] if rows else None


def generalisation_section(study: Study, report_dir: Path) -> list[str]:
    """The report's Generalisation section (empty without test-set results)."""
    from fwi_attn.layout import generalisation_figure_path

    sets = load_test_sets(study)
    if not sets:
        return []
    rows = generalisation_table(study, sets)
    parts = ["## Generalisation\n", GENERALISATION_TEXT, generalisation_markdown(rows)]
    transfer = transfer_markdown(rows, study)
    if transfer:
        parts += ["### Family transfer\n", transfer]
    distances = distances_markdown(sets)
    if distances:
        parts += ["### Distance from the training models\n", distances]
    shown = showcase_variant(study)
    why = "selected by the screening" if study.selection else "lowest point estimate of test MAE"
    parts.append(_figure("True versus predicted on each set", generalisation_figure_path(study.dir), report_dir,
                         f"`{shown}` ({why}), seed {min(study.seeds(shown))}: the first models of the study's "
                         f"test split and of each set, truth and prediction (km/s)." if shown else ""))
    return parts


def draw_generalisation_figure(study: Study, out) -> Path | None:
    """Draw the true-versus-predicted figure of :func:`showcase_variant` on every set; None without sets."""
    from fwi_attn.io.predictions import read_predictions
    from fwi_attn.results.plots import plot_generalisation

    sets, shown = load_test_sets(study), showcase_variant(study)
    if not sets or shown is None:
        return None
    seed = min(study.seeds(shown))
    files = {"test": study.run_dir(shown, seed) / RUN.predictions}
    files.update({n: run_dir(r.dir, shown, seed) / RUN.predictions for n, r in sets.items()})
    preds = {n: read_predictions(p) for n, p in files.items() if p.exists()}
    c = study.config
    plot_generalisation(preds, out, c["survey"]["dx"], c["geology"]["vmin"], c["geology"]["vmax"], shown)
    return Path(out)


# ----------------------------------------------------------------------------- the report


def _levels(n) -> str:
    return "every level" if n is None else f"the {n} coarsest level{'s' if n != 1 else ''} (bottleneck included)"


def attention_placement(study: Study | None) -> str:
    """Where each variant's attention sits, as built (metrics.json's ``model``), not as asked."""
    built = {}
    for variant in (study.variants if study else []):
        for seed in study.seeds(variant):
            kwargs = (study.metrics[(variant, seed)].get("model") or {}).get("kwargs") or {}
            if kwargs.get("attn", "none") != "none" or kwargs.get("gates"):
                built.setdefault(variant, _levels(kwargs.get("attn_levels")))
    if not built:
        return ""
    places = list(built.values())
    common = max(places, key=places.count)  # the first variant's placement on a tie
    odd = [f"{v}: {where}" for v, where in built.items() if where != common]
    return f"attention at {common}" + (f" ({'; '.join(odd)})" if odd else "")


def acquisition(config: dict) -> str:
    """What the simulated survey is, in a geophysicist's words: water, surface, record length."""
    s, g = config["survey"], config["geology"]
    water = (g.get("water") or {}).get("probability", 0.0)
    surface = ("a free surface (pressure-release top, with surface multiples and ghosts)" if s.get("free_surface")
               else "no free surface (absorbing top: no surface multiples or ghosts)")
    sea = (f"a water layer on top of {100 * water:g}% of the models" if water else
           "no water layer: a land-like survey, or marine data redatumed to the top of the model")
    return f"sources and receivers at {s['source_depth']:g} / {s['receiver_depth']:g} m depth; {sea}; {surface}"


def config_summary(config: dict, study: Study | None = None) -> str:
    """A few markdown bullet lines describing the study's setup; attention placement is read
    from what was built (each run's metrics.json) when the study's results are given."""
    st, s, m, t = config["study"], config["survey"], config["model"], config["train"]
    ds = config["datasets"][st["dataset"]]
    n = ds.get("samples", {})
    levels = attention_placement(study) or f"attention at {_levels(m.get('attn_levels'))} (as configured)"
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
        f"- **Acquisition**: {acquisition(config)}.",
        f"- **Velocity range** {config['geology']['vmin']:g} to {config['geology']['vmax']:g} m/s "
        f"(the [-1, 1] scale of MAE/RMSE).",
        f"- **Networks**: UNet width {m['width']}, depth {m['depth']}, {levels}; InversionNet "
        f"at {m.get('width_mult', 1.0):g}x OpenFWI's widths; input sign(x) log1p({gain} |x|), min-max "
        f"scaled; training {t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']:g}, loss {t['loss']}, "
        f"scheduler {t['scheduler']}.",
    ])


def _to_ms(config: dict) -> float | None:
    """m/s per unit of the [-1, 1] scale."""
    g = config.get("geology", {})
    return (g["vmax"] - g["vmin"]) / 2 if "vmin" in g and "vmax" in g else None


def answer_markdown(family: list[dict], study: Study, conv: list[dict]) -> str:
    """The report's headline: the confirmed differences, the equivalences within the margin, or an
    honest "inconclusive" with the smallest difference the design detects; then the convergence
    evidence, which bounds what any of it means."""
    if not family:
        return ""
    to_ms = _to_ms(study.config)

    def ms(x):
        return f" ({x * to_ms:+.0f} m/s)" if to_ms else ""

    stage = "confirmation stage (fresh seeds, test split)" if study.selection else "test split"
    seeds = sorted({e["seeds"][0] for e in family} | {e["seeds"][1] for e in family})
    design = (f"{'/'.join(map(str, seeds))} seeds an arm x {family[0]['n']} test samples, {family[0]['m']} "
              f"comparison(s) corrected together")
    lines = []
    for e in family:
        interval = f"Bonferroni interval [{e['ci_low_adj']:+.4f}, {e['ci_high_adj']:+.4f}], Holm p {e['p_holm']:.3g}"
        if e["significant"]:
            lines.append(f"- **Confirmed: `{e['arm']}` is {'better' if e['better'] else 'worse'} than `{e['against']}`** "
                         f"by {e['mean_diff']:+.4f}{ms(e['mean_diff'])} in test MAE ({interval}); against "
                         f"{e['isolates']}.")
        elif e["equivalent"]:
            lines.append(f"- **Equivalent: `{e['arm']}` and `{e['against']}`** within the margin ±{e['margin']:.4f} "
                         f"(difference {e['mean_diff']:+.4f}{ms(e['mean_diff'])}, equivalence Holm p "
                         f"{e['p_equivalence_holm']:.3g}); against {e['isolates']}.")
    detect = max((e["detectable"] for e in family if math.isfinite(e.get("detectable", math.nan))), default=math.nan)
    if math.isfinite(detect):
        size = (f"**Design**: {design}; it detects MAE differences of {detect:.4f}"
                + (f" ({detect * to_ms:.0f} m/s)" if to_ms else "")
                + " at 80% power at the corrected 5% level (the largest over its comparisons).")
    else:
        size = f"**Design**: {design}; too few samples to estimate its own precision."
    margin = 100 * float(study.config.get("study", {}).get("margin", 0.05))
    if not any(e["claimable"] for e in family):
        head = (f"**Answer: none possible.** Every arm on the {stage} has one seed, so the variance between "
                "trainings is unknown and the intervals hold the test samples' variance only: no difference or "
                "equivalence between trained networks can be claimed. Train at least two seeds an arm. Point "
                "estimates: " + "; ".join(f"`{e['arm']}` − `{e['against']}` {e['mean_diff']:+.4f}{ms(e['mean_diff'])}"
                                          for e in family) + ".")
    elif lines:
        head = f"**Answer** on the {stage}:\n\n" + "\n".join(lines)
        rest = [e for e in family if not (e["significant"] or e["equivalent"])]
        if rest:
            head += ("\n- Inconclusive (no difference confirmed, no equivalence within the margin): "
                     + ", ".join(f"`{e['arm']}` vs `{e['against']}` ({e['mean_diff']:+.4f}{ms(e['mean_diff'])})"
                                 for e in rest) + ".")
    else:
        head = (f"**Answer: inconclusive.** On the {stage}, no difference is confirmed and no equivalence within "
                f"the margin (±{margin:g}% of the reference's MAE) is shown. Point estimates: "
                + "; ".join(f"`{e['arm']}` − `{e['against']}` {e['mean_diff']:+.4f}{ms(e['mean_diff'])}" for e in family)
                + ".")
    head += "\n\n" + size
    if not study.selection:
        head += ("\n\nNo control isolates attention in this one-stage study: a difference from the reference may "
                 "come from parameters or supervision as well.")
    summary = convergence_summary(conv)
    return head + ("\n\n" + summary if summary else "") + "\n"


def baseline_line(study: Study, reference: str) -> str:
    """The reference against the mean-model baseline (outside the corrected family): whether the
    networks learn from the data at all."""
    if study.mean is None or reference not in study.variants:
        return ""
    values = {v: seed_sample_values(study, v, "mae") for v in (reference, BASELINE)}
    e = stats.compare_family(values, [stats.Comparison(reference, BASELINE, against_trained=False)],
                             lower_is_better=True)[0]
    ref_mae = next(r["mae"] for r in comparison_table(study, [reference], metrics=("mae",), include_baseline=False))
    mean_mae = run_figure(study.mean, "mae")
    what = ("the network learns from the data" if e["better"] else
            "it is not shown to beat predicting the mean model: train longer or on more data")
    return (f"`{reference}` against the mean-model baseline: test MAE {ref_mae:.4f} vs {mean_mae:.4f} (ratio "
            f"{ref_mae / mean_mae:.2f}; difference {e['mean_diff']:+.4f}, 95% interval [{e['ci_low']:+.4f}, "
            f"{e['ci_high']:+.4f}]): {what}.\n")


def screening_markdown(selection: dict) -> str:
    """The screening stage: validation MAE per variant (point estimates, no claims) and what it selected."""
    rows = ["| variant | validation MAE, mean over screening seeds | per seed | selected |", "|---|---:|---|---|"]
    for r in selection["scores"]:
        per = ", ".join(f"{k}: {v:.4f}" for k, v in r["per_seed"].items())
        rows.append(f"| {r['variant']} | {r['val_mae']:.4f} | {per} | {'yes' if r['variant'] in selection['selected'] else ''} |")
    controls = selection.get("controls", {})
    ctrl = "; ".join(f"`{c}` isolates {spec['isolates']}" + (f" (width {spec['width']}, {spec['parameters']:,} parameters)"
                                                             if "width" in spec else "")
                     for c, spec in controls.items()) or "none apply"
    return ("Every variant trained on the screening seeds "
            f"{selection['screen_seeds']}, scored on the **validation** split only ({selection['criterion']}). "
            "These are point estimates for choosing what to confirm, not results: the selection is data-dependent, "
            "so nothing here is compared or claimed.\n\n" + "\n".join(rows) + "\n\n"
            f"Selected for confirmation: {', '.join(f'`{v}`' for v in selection['selected'])} (the "
            f"{selection['top']} lowest); reference `{selection['reference']}`; controls: {ctrl}. Arms "
            f"{', '.join(selection['arms'])} trained on the fresh seeds {selection['confirm_seeds']} and scored on "
            "the test split below.\n")


def attention_section(study: Study) -> list[str]:
    """The report's Attention and salt section: the scores, the figures, and what they show about
    the hypothesis that attention focuses on salt, and no more."""
    from fwi_attn.layout import comparison_figure_paths

    rows = attention_salt_table(study)
    screening = attention_salt_table(study, screening=True)
    if not rows and not screening:
        return []
    maps = [r for r in rows if r["kind"] == "attention"]
    above = [r for r in maps if r["salt_above_chance"]]
    below = [r for r in maps if r["salt_high_adj"] < 0.5]
    if not maps:
        finding = "No compared variant has a spatial attention map: the hypothesis cannot be examined here."
    elif above:
        finding = (f"{len(above)} of {len(maps)} attention maps rank salt cells above the rest beyond chance (corrected): "
                   + ", ".join(f"`{r['variant']}` {r['level']} ({r['salt_auc']:.2f})" for r in above)
                   + ". That the map concentrates on salt says where the network looks, not that looking there makes "
                   "its velocity better: the comparisons above say whether the variant is more accurate.")
    else:
        finding = (f"None of the {len(maps)} attention maps ranks salt cells above the rest beyond chance (corrected): "
                   "these numbers give no support to the idea that attention focuses on salt here.")
    if below:
        finding += (" Maps whose corrected interval lies below 0.5 suppress salt relative to the rest: "
                    + ", ".join(f"`{r['variant']}` {r['level']}" for r in below) + ".")
    figs = comparison_figure_paths(study.dir)
    report_dir = study.dir / "report"
    parts = ["## Attention and salt\n", ATTENTION_TEXT.format(m=len(rows)), attention_salt_markdown(rows),
             finding + "\n" if rows else ""]
    if screening:
        parts += ["### Every attention variant (screening runs; descriptive)\n",
                  SCREENING_ATTENTION_TEXT.format(seeds=sorted({s for _, s in study.screening_attention}),
                                                  m=len(screening)),
                  attention_salt_markdown(screening)]
    return parts + [
        *(_figure(captions.title(name), figs[name], report_dir, captions.caption(name))
          for name in ("attention_salt", "attention_iou"))]


def published_markdown(study: Study) -> str:
    """Our InversionNet beside OpenFWI's published figures for the dataset it imitates, scored by the
    same code (pooled MAE / RMSE, OpenFWI's SSIM); "" when the study's family has none."""
    st = study.config.get("study", {})
    family = study.config.get("datasets", {}).get(st.get("dataset"), {}).get("family")
    if family not in OPENFWI_PUBLISHED or "inversionnet" not in study.variants:
        return ""
    name, ref = OPENFWI_PUBLISHED[family]
    runs = [study.metrics[("inversionnet", s)] for s in study.seeds("inversionnet")]
    ds = study.config["datasets"][st["dataset"]]
    ours = {m: float(np.mean([run_figure(r, m) for r in runs])) for m in ("mae", "rmse", "ssim")}
    lines = ["| InversionNet | MAE | RMSE | SSIM | training models | epochs |", "|---|---:|---:|---:|---:|---:|",
             f"| OpenFWI, {name} (published) | {ref['mae']:.4f} | {ref['rmse']:.4f} | {ref['ssim']:.4f} | 24,000 | 120 |",
             f"| ours, `{family}` ({len(runs)} seed(s)) | {ours['mae']:.4f} | {ours['rmse']:.4f} | {ours['ssim']:.4f} | "
             f"{ds.get('samples', {}).get('train', '')} | {study.config.get('train', {}).get('epochs', '')} |"]
    return ("Our `" + family + "` family imitates OpenFWI's " + name + "; both rows are on the same scale "
            "(pooled MAE and RMSE on [-1, 1], OpenFWI's SSIM on raw predictions, computed by one "
            "code path). A gap at our size reflects the training budget, not the metric.\n\n"
            + "\n".join(lines) + "\n")


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
    family = compare_variants(study, "mae", reference)
    conv = convergence_table(study)
    parts = [f"# {title}\n", f"*{date.isoformat()} — study `{study.dir.name}`, fwi-attn {__version__}*\n"]
    parts.append(answer_markdown(family, study, conv))
    parts.append(baseline_line(study, reference))
    if config:
        parts += ["## Setup\n", config_summary(config, study) + "\n"]
    parts.append(_figure(captions.title("dataset_preview"), study.dir / "figures" / "dataset_preview.png", report_dir,
                         captions.caption("dataset_preview")))
    if study.selection:
        parts += ["## Screening (validation split; point estimates, no claims)\n", screening_markdown(study.selection)]
    stage = "Confirmation (fresh seeds, test split): the results" if study.selection else "Comparison (test split)"
    parts += [f"## {stage}\n",
              "Test-set figures; mean ± sample standard deviation over seeds (point estimates: which differences "
              "hold is the comparisons' table below to say).\n",
              METHOD_TEXT, table_markdown(rows)]
    if family:
        trained = stats.training_variance(seed_sample_values(study, v, "mae") for v in study.variants)
        parts += ["### Comparisons\n",
                  STATS_TEXT.format(reference=reference, m=family[0]["m"], arms=trained.arms if trained else 0,
                                    seed_df=trained.seed_df if trained else 0,
                                    margin=float(st.get("margin", 0.05))),
                  comparisons_markdown(family, _to_ms(config))]
    misfit = compare_variants(study, "rel_l2_reflection", reference)
    if misfit:
        parts += ["### Data misfit on the reflections\n", MISFIT_TEXT.format(n=misfit[0]["n"], m=misfit[0]["m"]),
                  comparisons_markdown(misfit)]
    parts += attention_section(study)
    if conv:
        parts += ["## Convergence\n",
                  "What each compared run's validation curve shows. Under OneCycle or cosine annealing the learning "
                  "rate falls to ~0 by the last planned epoch, which flattens every curve whatever the network could "
                  "still learn: such a run is budget-limited unless it stopped on a validation plateau "
                  "(`train.patience`). Under a constant rate a flat tail (slope above -0.5% an epoch over the last "
                  "quarter of the epochs) counts as converged.\n",
                  convergence_markdown(conv)]
    parts += generalisation_section(study, report_dir)
    published = published_markdown(study)
    if published:
        parts += ["## Against OpenFWI's published numbers\n", published]
    parts.append("## Figures\n")
    # The comparison figures' keys (layout) and their captions' names (captions.CAPTIONS).
    for key, name in (("bars", "bars"), ("cost", "cost"), ("curves", "curves"), ("predictions", "predictions"),
                      ("attention", "attention"), ("gathers", "gathers"), ("physics", "physics_compare")):
        parts.append(_figure(captions.title(name), figs[key], report_dir, captions.caption(name)))
    phys = physics_table(study)
    if phys:
        parts += ["### Data misfit\n", physics_markdown(phys)]
    refine = refine_markdown(study)
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
    parts += ["## Provenance\n", provenance_markdown(provenance(config or None))]
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


def latex_tables(study: Study, reference: str | None = None) -> dict[str, str]:
    """The report's tables a paper uses, as markdown keyed by their ``.tex`` file name: the
    comparison table, the confirmatory comparisons and, in a two-stage study, the screening's ranking."""
    reference = reference or study.config.get("study", {}).get("reference", "none")
    tables = {"comparison_table.tex": table_markdown(comparison_table(study)),
              "comparisons.tex": comparisons_markdown(compare_variants(study, "mae", reference), _to_ms(study.config))}
    if study.selection:
        tables["screening.tex"] = screening_markdown(study.selection)
    return {name: md for name, md in tables.items() if md}


def write_report(study_dir: str | os.PathLike, reference: str | None = None,
                 title: str | None = None, config: dict | None = None) -> tuple[Path, Path]:
    """Write ``<study_dir>/report/report.md`` and ``report.html`` (atomically), and the tables of
    :func:`latex_tables` as ``.tex`` beside them; return the markdown and HTML paths."""
    from fwi_attn.io.files import atomic_path
    from fwi_attn.layout import generalisation_figure_path
    from fwi_attn.results.latex import write_latex
    from fwi_attn.results.style import figure_settings

    study = load_study(study_dir, config=config)
    with figure_settings(study.config):
        draw_generalisation_figure(study, generalisation_figure_path(study.dir))
    md = build_markdown(study, reference, title)
    report_dir = study.dir / "report"
    md_path, html_path = report_dir / "report.md", report_dir / "report.html"
    with atomic_path(md_path, suffix=".md") as tmp:
        tmp.write_text(md)
    page_title = title or study.config.get("study", {}).get("title", "fwi-attn weekly report")
    with atomic_path(html_path, suffix=".html") as tmp:
        tmp.write_text(markdown_to_html(md, report_dir, page_title))
    for name, table in latex_tables(study, reference).items():
        write_latex(table, report_dir / name)
    return md_path, html_path
