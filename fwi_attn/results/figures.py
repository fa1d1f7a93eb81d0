"""What ``fwi-attn figures`` draws: a run's figures and a study's comparison figures and tables,
each written in every format of the config's ``figures`` section with the run's provenance."""
from __future__ import annotations

from fwi_attn.io.predictions import read_predictions
from fwi_attn.layout import RUN
from fwi_attn.results.attention_plots import plot_attention_maps, plot_attention_salt, plot_attention_vs_iou
from fwi_attn.results.latex import write_latex
from fwi_attn.results.physics_plots import plot_gathers, plot_physics
from fwi_attn.results.plots import (
    first_seed_files,
    one_sample,
    placeholder,
    plot_accuracy_cost,
    plot_history,
    plot_metric_bars,
    plot_predictions_grid,
    plot_run_examples,
    plot_training_curves,
)
from fwi_attn.results.style import figure_settings, format_paths


def draw_run_figures(cfg, variant: str, seed: int) -> list:
    """The per-run figures of one (variant, seed): test examples and training curves."""
    from fwi_attn.io.history import read_history
    from fwi_attn.layout import run_dir, run_figure_paths, study_dir

    study = study_dir(cfg)
    run = run_dir(study, variant, seed)
    paths = run_figure_paths(study, variant, seed)
    g = cfg.geology
    with figure_settings(cfg):
        plot_run_examples(read_predictions(run / RUN.predictions), paths["examples"], cfg.survey.dx, g.vmin, g.vmax,
                          cfg.evaluate.n_examples, title=f"{variant}, seed {seed}: test examples")
        plot_history(read_history(run / RUN.history), paths["history"], title=f"{variant}, seed {seed}")
        return [f for p in paths.values() for f in format_paths(p)]


def draw_comparison_figures(cfg) -> list:
    """Every comparison figure and the metric table (CSV, markdown and LaTeX) of a study; returns
    the files written (each figure in every format of ``figures.formats``)."""
    from fwi_attn.io.files import atomic_path
    from fwi_attn.layout import comparison_figure_paths, study_dir
    from fwi_attn.results.study import METRICS, load_study
    from fwi_attn.results.tables import comparison_table, table_markdown, write_table_csv

    study = load_study(study_dir(cfg), config=cfg.to_dict())
    paths = comparison_figure_paths(study.dir)
    g, dx = cfg.geology, cfg.survey.dx
    rows = comparison_table(study, metrics=METRICS)
    write_table_csv(rows, paths["table_csv"], metrics=METRICS)
    md = table_markdown(rows)
    with atomic_path(paths["table_md"], suffix=".md") as tmp:
        tmp.write_text(md)
    table_tex = paths["table_md"].with_suffix(".tex")
    write_latex(md, table_tex)
    with figure_settings(cfg):
        plot_metric_bars(rows, paths["bars"])
        plot_accuracy_cost(rows, paths["cost"])
        plot_training_curves(study, paths["curves"])
        plot_predictions_grid(study, paths["predictions"], dx, g.vmin, g.vmax, n=min(3, cfg.evaluate.n_examples))
        draw_attention_figure(cfg, study, paths["attention"])
        plot_gathers(study, paths["gathers"], g.vmin, g.vmax, dx)
        plot_physics(study, paths["physics"])
        draw_attention_salt_figures(study, paths["attention_salt"], paths["attention_iou"])
        figures = [f for k, p in paths.items() if not k.startswith("table") for f in format_paths(p)]
    return [paths["table_csv"], paths["table_md"], table_tex, *figures]


def draw_attention_salt_figures(study, out_auc, out_iou) -> None:
    """The attention-against-salt figures of the compared runs: AUC by variant and map, and the
    per-sample AUC against salt IoU of one variant (the screening's selection, else the first
    variant with a spatial map)."""
    files = [study.run_dir(v, s) / RUN.attention_salt for v, s in study.metrics]
    files = [f for f in files if f.exists()]
    if not files:
        placeholder(out_auc, f"no {RUN.attention_salt} found")
        placeholder(out_iou, f"no {RUN.attention_salt} found")
        return
    plot_attention_salt(files, out_auc)
    spatial = [v for v in study.variants if any(study.attention.get((v, s), {}).get("levels") for s in study.seeds(v))]
    chosen = [v for v in (study.selection or {}).get("selected", []) if v in spatial] or spatial[:1]
    if not chosen:
        placeholder(out_iou, "no variant with a spatial attention map")
        return
    v = chosen[0]
    plot_attention_vs_iou([study.run_dir(v, s) for s in study.seeds(v)], out_iou,
                          title=f"{v}: per-sample salt AUC of each map against the prediction's salt IoU (all seeds)")


def draw_attention_figure(cfg, study, out) -> None:
    """Attention maps of every variant's seed-0 model on the showcase test model (the one with the
    most salt), from each run's ``attention.h5`` (written by ``fwi-attn evaluate``: the maps of the
    network with its training normalisation; no network is loaded here)."""
    from fwi_attn.io.attention import read_attention

    atts = first_seed_files(study, RUN.attention, read_attention)
    if not atts:
        return placeholder(out, f"no {RUN.attention} found")
    k = one_sample(atts, "evaluate")
    first = next(iter(atts.values()))
    g = cfg.geology
    plot_attention_maps({v: a.maps for v, a in atts.items()}, {v: a.pad for v, a in atts.items()}, first.velocity,
                        out, cfg.survey.dx, g.vmin, g.vmax, cfg.evaluate.salt_threshold, k)

