"""The weekly-report bundle: ``report/report.md`` and a self-contained ``report/report.html``,
built from a study's results (:mod:`fwi_attn.results.study`) and figures."""
from __future__ import annotations

import base64
import datetime as _dt
import os
import re
from pathlib import Path

import numpy as np

from fwi_attn.results.study import (BASELINE, Study, comparison_table, convergence_markdown, convergence_table,
                                    format_metric, load_study, physics_markdown, physics_table, rank_variants,
                                    ranking_markdown, refine_markdown, run_figure, table_markdown)

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
    "`metrics.json` keeps every per-sample value, the same figures with predictions clipped to "
    "[vmin, vmax], and the unpadded SSIM (`ssim_valid`).\n")

STATS_TEXT = (
    "Differences are variant minus `{reference}` in test MAE; negative is better. They are "
    "estimated over training seeds and test samples together (a crossed random-effects model: "
    "the per-sample differences give the test-sample variance, each variant's runs give the "
    "variance between trainings), with a t interval on Satterthwaite's degrees of freedom. "
    "Holm's correction covers the {m} variant(s) compared with `{reference}`; the corrected interval "
    "is at level 1 - 0.05/{m}. Effect size: the difference over the standard deviation of the "
    "per-sample differences. A gain is claimed only where the corrected interval excludes 0 "
    "(bold).\n")

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
        f"- **Velocity range** {config['geology']['vmin']:g} to {config['geology']['vmax']:g} m/s "
        f"(the [-1, 1] scale of MAE/RMSE).",
        f"- **Networks**: UNet width {m['width']}, depth {m['depth']}, {levels}; InversionNet "
        f"at {m.get('width_mult', 1.0):g}x OpenFWI's widths; input sign(x) log1p({gain} |x|), min-max "
        f"scaled; training {t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']:g}, loss {t['loss']}, "
        f"scheduler {t['scheduler']}.",
    ])


def claims_text(ranking: list[dict], reference: str, study: Study) -> str:
    """What the study can claim against ``reference``: the significant gains and losses (corrected
    intervals excluding 0) and the smallest difference it could have detected."""
    compared = [e for e in ranking if "mean_diff" in e and e["variant"] != BASELINE]
    if not compared:
        return ""
    vmin, vmax = study.config.get("geology", {}).get("vmin"), study.config.get("geology", {}).get("vmax")
    to_ms = (vmax - vmin) / 2 if vmin is not None and vmax is not None else None
    seeds = sorted({e["seeds"][0] for e in compared})
    detect = [e["detectable"] for e in compared if np.isfinite(e.get("detectable", np.nan))]
    size = f"{'/'.join(map(str, seeds))} seed(s) x {compared[0]['n']} test samples"
    if detect:
        mdd = float(np.median(detect))
        size_line = (f"With {size}, MAE differences below about {mdd:.4f}"
                     + (f" ({mdd * to_ms:.0f} m/s)" if to_ms else "")
                     + f" cannot be told apart from `{reference}` (80% power at the Holm-corrected 5% level).")
    else:
        size_line = f"With {size}, the training variance cannot be estimated: no claim is possible."
    if any(not e["seed_variance"] for e in compared):
        size_line += " With one seed a side, the intervals hold test-sample variance only."
    better = [e["variant"] for e in compared if e.get("better")]
    worse = [e["variant"] for e in compared if e.get("significant") and not e.get("better")]
    if better:
        claim = f"Better than `{reference}` (corrected interval excluding 0): {', '.join(f'`{v}`' for v in better)}."
    else:
        claim = f"No variant is shown better than `{reference}`: every corrected interval includes 0 or lies above it."
    if worse:
        claim += f" Worse than `{reference}`: {', '.join(f'`{v}`' for v in worse)}."
    return f"{claim} {size_line}"


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
    ranking = rank_variants(study, reference, "mae")
    parts = [f"# {title}\n", f"*{date.isoformat()} — study `{study.dir.name}`, fwi-attn {__version__}*\n"]

    networks = [e for e in ranking if e["variant"] != BASELINE]
    if networks:
        best = networks[0]
        line = (f"**Best variant: `{best['variant']}`**, test MAE {format_metric(best['value'], 'mae')} on the [-1, 1] "
                f"scale (mean over {len(study.seeds(best['variant']))} seed(s))")
        if study.mean is not None:
            mean_mae = run_figure(study.mean, "mae")
            ratio = best["value"] / mean_mae
            verdict = ("the networks learn from the data" if ratio < 1 else
                       "no network beats predicting the mean model: train longer or on more data")
            line += (f", against {format_metric(mean_mae, 'mae')} for the mean-model baseline "
                     f"(ratio {ratio:.2f}: {verdict})")
        parts.append(line + ".\n")
        parts.append(claims_text(ranking, reference, study) + "\n")
    if config:
        parts += ["## Setup\n", config_summary(config, study) + "\n"]
    parts.append(_figure("Dataset preview", study.dir / "figures" / "dataset_preview.png", report_dir,
                         "Training models (top, km/s) and their middle-shot gathers (bottom)."))
    parts += ["## Comparison\n",
              "Test-set figures; mean ± sample standard deviation over seeds; best network in bold.\n",
              METHOD_TEXT, table_markdown(rows)]
    parts += ["## Ranking\n",
              STATS_TEXT.format(reference=reference, m=len([e for e in ranking if e["variant"] not in (reference, BASELINE)]) or 1),
              ranking_markdown(ranking, reference)]
    conv = convergence_table(study)
    if conv:
        parts += ["## Convergence\n",
                  "Whether each run had stopped improving: the slope of a line through the validation MAE "
                  "of its last epochs, relative to their level; below 0.5% an epoch (or a stop on a "
                  "plateau, `train.patience`) counts as converged. A run still falling would have gained "
                  "from more epochs, and its variant's figures are a lower bound on what it can do.\n",
                  convergence_markdown(conv)]
    published = published_markdown(study)
    if published:
        parts += ["## Against OpenFWI's published numbers\n", published]
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
    from fwi_attn.data.store import atomic_path

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
