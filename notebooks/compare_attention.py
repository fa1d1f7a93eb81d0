# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Compare attention variants
#
# Loads one study's results (`results/<study>/`, written by `snakemake all` or the `fwi-attn`
# commands) and reproduces the weekly report's comparison table, ranking and plots for the
# variants and metrics chosen below. All analysis code lives in `fwi_attn.results` (study, tables,
# comparisons, plots) and the metric names in `fwi_attn.learn.metrics`; this notebook only calls them.
#
# The workflow runs it with papermill into `results/<study>/report/`; to run it by hand, edit the
# parameters cell (or `papermill compare_attention.ipynb out.ipynb -p study_dir results/paper`).

# %% tags=["parameters"]
study_dir = "results/default"  # <results_dir>/<study name>
variants = None  # a list such as ["none", "se", "cbam"]; None: every variant of the study
metrics = None  # a list of fwi_attn.learn.metrics.METRICS such as ["mae", "ssim"]; None: the report's table
reference = "none"  # the variant the others are compared with, sample by sample

# %%
from IPython.display import Image, Markdown, display

from fwi_attn import layout
from fwi_attn.learn.metrics import METRICS
from fwi_attn.results import comparisons, plots, style, tables
from fwi_attn.results.study import DEFAULT_METRICS, LABELS, load_study


def show(fig):
    """Display a figure returned by an fwi_attn.results.plots function (called with out=None)."""
    display(Image(style.figure_png(fig)))


study = load_study(study_dir, variants=variants)
metrics = list(metrics or DEFAULT_METRICS)
unknown = [m for m in metrics if m not in METRICS]
if unknown:
    raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
print(f"{study.dir}: variants {study.variants}; runs {len(study.metrics)}; "
      f"mean-model baseline {'yes' if study.mean else 'no'}")

# %% [markdown]
# ## Comparison table
# Test-set figures, mean ± standard deviation over seeds: point estimates (which differences hold
# is the comparisons' table below to say). In a two-stage study these are the confirmation runs.

# %%
rows = tables.comparison_table(study, metrics=metrics)
display(Markdown(tables.table_markdown(rows, metrics)))

# %% [markdown]
# ## The study's comparisons
# The family the report states, per metric: each arm against the reference (and, in a two-stage
# study, against its controls), over training seeds and test samples together, with 95% and
# Bonferroni intervals, Holm-adjusted p-values, the equivalence test within `study.margin` and the
# smallest detectable difference (`fwi_attn.results.comparisons.compare_variants`, `docs/study.md`).

# %%
for metric in metrics:
    if reference in study.variants:
        family = comparisons.compare_variants(study, metric=metric, reference=reference)
        display(Markdown(f"**{LABELS.get(metric, metric)}**\n\n" + comparisons.comparisons_markdown(family)))

# %% [markdown]
# ## Plots

# %%
show(plots.plot_metric_bars(rows, None, metrics=metrics))

# %%
show(plots.plot_accuracy_cost(tables.comparison_table(study, metrics=["mae_ms"]), None))

# %%
show(plots.plot_training_curves(study, None))

# %%
if reference in study.variants:
    show(plots.plot_paired_samples(study, None, reference=reference, metric=metrics[0]))

# %% [markdown]
# The workflow's figures (attention maps, gathers, predictions) are in `figures/`:

# %%
figures = layout.comparison_figure_paths(study.dir)
for key in ("attention", "predictions", "gathers"):
    if figures[key].exists():
        display(Markdown(f"**{key}**"), Image(filename=str(figures[key])))
