"""Every figure's caption, once: the report quotes them and ``workflows/report/<name>.rst`` (the
captions of ``snakemake --report``) are these texts, written by :func:`write_rst` and checked
against them by the tests.

Keys are the ``.rst`` file names; the per-run captions are Jinja templates that Snakemake fills
with the run's wildcards. Colours and cut-offs named in a caption come from the code that draws
them, so a caption cannot describe another figure than the one drawn.
"""
from __future__ import annotations

import os
from pathlib import Path

from fwi_attn.layout import RUN
from fwi_attn.results.style import SALT_OUTLINE_COLOR

_RUN = "Run {{ snakemake.wildcards.variant }}, seed {{ snakemake.wildcards.seed }}"

#: ``{name: (title, caption)}``: the title the report gives a figure, and its caption.
CAPTIONS = {
    "dataset_preview": (
        "Dataset preview",
        "Random salt velocity models from the first training shard (top, km/s on the study's fixed velocity "
        "range) with the gathers of the middle shot (bottom; the star marks the source)."),
    "bars": (
        "Metrics by variant",
        "Test metrics per variant: bars are means over seeds, error bars the standard deviation over seeds; the "
        "dashed line is the mean-model baseline (predicting the training split's mean model)."),
    "cost": (
        "Accuracy versus cost",
        "Accuracy versus cost: test MAE (m/s) against the number of parameters and the inference time per test "
        "sample (log axes where the values span more than a decade); error bars are standard deviations over seeds."),
    "curves": (
        "Training curves",
        "Training loss and validation MAE per epoch for every variant: the line is the mean over seeds, the band "
        "spans the lowest to the highest seed."),
    "predictions": (
        "Predictions",
        "The same test models predicted by every variant's seed-0 network (and the mean model, last row), on one "
        "velocity scale (km/s)."),
    "attention": (
        "Attention maps",
        "Spatial attention maps of every variant's first compared network for the test model with the most salt, "
        "in forward order (encoder, bottleneck, decoder), on the model's extent; 0 = suppressed, 1 = passed. The "
        f"{SALT_OUTLINE_COLOR} line is the true salt outline; \"predicted salt\" is a salt head's salt probability "
        "(m2f's masks follow it). Variants with channel attention only have no map."),
    "attention_salt": (
        "Attention AUC by variant and map",
        "ROC AUC of each variant's spatial attention maps (and salt heads) as detectors of salt cells (left) and of "
        "the salt boundary (right), mean over every compared run's test samples; 0.5 is chance. The report's "
        "Attention and salt section gives the intervals over seeds and samples."),
    "attention_iou": (
        "Attention AUC against salt IoU",
        "Per test sample, the salt AUC of each map of the variant the screening selected (or, in a one-stage "
        "study, the first variant with a spatial map) against the salt IoU of its prediction, pooled over seeds, "
        "with Spearman's rho."),
    "gathers": (
        "Data fit",
        "Observed, re-simulated and residual middle-shot gathers of the test model with the most salt, for every "
        "variant's seed-0 prediction (top right: the mean model's residual); one amplitude clip for all panels, so "
        "residuals compare directly with the data."),
    "physics_compare": (
        "Physics check",
        "Relative L2 data misfit and trace correlation of re-simulated predictions per variant (mean over seeds, "
        "error bars = std); dashed: the mean model, dotted: the true model (the self-check, about 0)."),
    "physics": (
        "Physics check of one run",
        "Physics check of one run (variant and seed in the labels) on its showcase test sample: the predicted "
        "model re-simulated with the test acquisition (``fwi-attn physics``), its middle shot beside the recorded "
        "gathers, the residual and the mean model's data; the title gives the mean misfits over the checked "
        "samples."),
    "refine": (
        "FWI refinement",
        f"FWI refinement of {_RUN[0].lower()}{_RUN[1:]}: full-waveform inversion started from the network's "
        "predictions (``fwi-attn refine``), before and after."),
    "run_examples": (
        "Test examples",
        f"{_RUN}: true model, prediction and error (prediction minus truth, km/s) for the first test models. "
        "Velocity and error scales are the same in every run's figure."),
    "run_history": (
        "Training history",
        f"{_RUN}: training loss, validation MAE (OpenFWI's [-1, 1] scale) and validation SSIM per epoch. The "
        f"dotted line marks the epoch saved as {RUN.model} (lowest validation MAE)."),
    "weekly": (
        "Weekly report",
        "The weekly report (also written as report.md): configuration summary, comparison table, ranking with "
        "paired statistics against the reference variant, and every comparison figure."),
}


def caption(name: str) -> str:
    """The caption of figure ``name`` (a key of :data:`CAPTIONS`)."""
    return CAPTIONS[name][1]


def title(name: str) -> str:
    """The title the report gives figure ``name``."""
    return CAPTIONS[name][0]


def rst_text(name: str, width: int = 110) -> str:
    """``workflows/report/<name>.rst``'s text: the caption wrapped at ``width`` characters."""
    import re
    import textwrap

    # A Jinja expression stays on one line: its spaces are held while the text is wrapped.
    text = re.sub(r"\{\{.*?\}\}", lambda m: m.group(0).replace(" ", "\0"), caption(name))
    wrapped = textwrap.fill(text, width=width, break_on_hyphens=False, break_long_words=False)
    return wrapped.replace("\0", " ") + "\n"


def write_rst(folder: str | os.PathLike) -> list[Path]:
    """Write every caption as ``<folder>/<name>.rst`` (``workflows/report/``); returns the files."""
    folder = Path(folder)
    written = []
    for name in CAPTIONS:
        path = folder / f"{name}.rst"
        path.write_text(rst_text(name), encoding="utf-8")
        written.append(path)
    return written
