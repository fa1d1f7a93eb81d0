"""Publication outputs of a study: captions, figure formats and metadata, LaTeX tables, provenance,
torch-free results, and the screening runs' attention kept apart from the confirmatory arms."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_report import N_TEST, hand_config, metrics_record, study_dir  # noqa: F401  (a fixture)

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- captions

def test_each_snakemake_caption_is_the_caption_table():
    """workflows/report/*.rst are the caption table's texts, one file per caption and no other."""
    from fwi_attn.results.captions import CAPTIONS, rst_text

    folder = REPO / "workflows" / "report"
    assert {p.stem for p in folder.glob("*.rst")} == set(CAPTIONS)
    for name in CAPTIONS:
        assert (folder / f"{name}.rst").read_text(encoding="utf-8") == rst_text(name), \
            f"{name}.rst differs from fwi_attn.results.captions; run captions.write_rst('workflows/report')"


def test_captions_name_the_colours_the_figures_draw():
    from fwi_attn.results.captions import caption
    from fwi_attn.results.style import SALT_OUTLINE_COLOR

    assert f"{SALT_OUTLINE_COLOR} line" in caption("attention")
    assert "white" not in caption("attention")


def test_report_quotes_the_caption_table(study_dir):  # noqa: F811
    from fwi_attn.layout import comparison_figure_paths
    from fwi_attn.results.captions import caption
    from fwi_attn.results.report import write_report

    for path in comparison_figure_paths(study_dir).values():  # a figure is captioned where it exists
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    md, _ = write_report(study_dir)
    text = md.read_text()
    for name in ("bars", "cost", "curves", "predictions", "gathers", "physics_compare"):
        assert caption(name) in text


# ----------------------------------------------------------------------------- figures

def _figure():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), constrained_layout=True)
    rng = np.random.default_rng(3)
    ax.imshow(rng.normal(size=(16, 16)))
    ax.plot([0, 15], [0, 15], color="w")
    fig.suptitle("a test figure")
    return fig


def test_every_format_written_at_paper_width_with_provenance(tmp_path, study_dir):  # noqa: F811
    """figures.formats writes the PNG and a PDF and SVG beside it (same stem), at the configured
    width, each carrying the commit and config hash in its metadata."""
    from PIL import Image

    from fwi_attn.provenance import config_hash
    from fwi_attn.results.style import figure_settings, save_figure

    config = yaml.safe_load((study_dir / "config.yaml").read_text())
    config["figures"] = {"formats": ["png", "pdf", "svg"], "width": "single"}
    with figure_settings(config):
        written = save_figure(_figure(), tmp_path / "fig.png")
    assert written == [tmp_path / "fig.png", tmp_path / "fig.pdf", tmp_path / "fig.svg"]
    assert (tmp_path / "fig.pdf").read_bytes().startswith(b"%PDF")
    assert b"<svg" in (tmp_path / "fig.svg").read_bytes()[:2000]
    digest = config_hash(config)
    png = Image.open(tmp_path / "fig.png")
    assert f"config_sha256={digest}" in png.text["Keywords"]
    assert png.text["Source"].startswith("fwi-attn commit ")
    assert abs(png.size[0] / 150 - 3.5) < 0.05  # 3.5 in at 150 dpi
    assert f"config_sha256={digest}".encode() in (tmp_path / "fig.pdf").read_bytes()


def test_outside_the_settings_a_figure_is_png_only(tmp_path):
    from fwi_attn.results.style import save_figure

    assert save_figure(_figure(), tmp_path / "plain.png") == [tmp_path / "plain.png"]
    assert not (tmp_path / "plain.pdf").exists()


def test_unknown_figure_format_is_refused_in_one_line():
    from fwi_attn.results.style import settings_from_config

    with pytest.raises(ValueError, match=r"figures.formats: \['eps'\]") as e:
        settings_from_config({"figures": {"formats": ["png", "eps"]}})
    assert "\n" not in str(e.value)


def test_variant_colours_are_the_colour_blind_safe_palettes():
    from matplotlib.colors import to_hex

    from fwi_attn.results.style import OKABE_ITO, TOL_MUTED, VARIANT_COLORS, variant_color

    safe = {c.lower() for c in (*OKABE_ITO, *TOL_MUTED)} | {"#777777"}
    assert {to_hex(c) for c in VARIANT_COLORS.values()} <= safe
    assert to_hex(variant_color("my_model")) in safe


def test_every_catalogued_network_has_its_own_colour():
    """One colour per network of the catalogue, the same in every figure, none shared."""
    from fwi_attn.catalogue import CATALOGUE
    from fwi_attn.results.style import VARIANT_COLORS

    assert set(VARIANT_COLORS) == {v.name for v in CATALOGUE}
    assert len(set(VARIANT_COLORS.values())) == len(VARIANT_COLORS)


# ----------------------------------------------------------------------------- LaTeX

def _latex_cells(tex: str) -> list[list[str]]:
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    body = tex[tex.index(r"\toprule") + len(r"\toprule"):tex.index(r"\bottomrule")].replace(r"\midrule", "")
    return [[c.strip() for c in re.split(r"(?<!\\)&", row)] for row in body.split(r"\\") if row.strip()]


def test_latex_table_has_the_markdown_numbers(study_dir):  # noqa: F811
    """The .tex comparison table is a booktabs tabular with the markdown table's cells: the same
    numbers and rounding, underscores escaped."""
    from fwi_attn.results.latex import markdown_table_rows, markdown_to_latex
    from fwi_attn.results.study import load_study
    from fwi_attn.results.tables import comparison_table, table_markdown

    md = table_markdown(comparison_table(load_study(study_dir)))
    tex = markdown_to_latex(md)
    assert tex.startswith(r"\begin{tabular}{lrrr") and tex.rstrip().endswith(r"\end{tabular}")
    head, _, body = markdown_table_rows(md)
    cells = _latex_cells(tex)
    assert len(cells) == len(body) + 1 and all(len(r) == len(head) for r in cells)
    number = re.compile(r"[-+]?\d[\d,]*\.?\d*")
    for md_row, tex_row in zip(body, cells[1:]):
        assert [number.findall(c) for c in md_row] == [number.findall(c.replace("$-$", "-")) for c in tex_row]
    assert r"MAE ([$-$1,1] scale)" in tex and r"$\pm$" in tex
    assert r"none\_wide" in markdown_to_latex("| variant |\n|---|\n| none_wide |\n")
    assert r"$-$0.0207 ($-$31 m/s)" in markdown_to_latex("| d |\n|---:|\n| -0.0207 (-31 m/s) |\n")


def test_report_writes_the_tables_as_tex(study_dir):  # noqa: F811
    from fwi_attn.results.report import write_report

    md, _ = write_report(study_dir)
    for name in ("comparison_table.tex", "comparisons.tex"):
        tex = (md.parent / name).read_text()
        assert r"\toprule" in tex and r"\bottomrule" in tex


# ----------------------------------------------------------------------------- provenance

def test_config_hash_follows_the_settings_not_their_order(study_dir):  # noqa: F811
    from fwi_attn.provenance import config_hash

    config = yaml.safe_load((study_dir / "config.yaml").read_text())
    same = json.loads(json.dumps(config))
    same["study"] = dict(reversed(list(same["study"].items())))
    assert config_hash(same) == config_hash(config)
    config["train"]["epochs"] += 1
    assert config_hash(config) != config_hash(same)


def test_provenance_outside_a_checkout_is_none_not_an_error(tmp_path, monkeypatch):
    import fwi_attn.provenance as prov

    monkeypatch.setattr(prov, "SOURCE_ROOT", tmp_path)
    prov.git_state.cache_clear()
    try:
        record = prov.provenance({"a": 1})
    finally:
        prov.git_state.cache_clear()
    assert record["commit"] is None and record["dirty"] is None
    assert record["versions"]["numpy"] == np.__version__
    assert record["device"] in ("cpu",) or record["device"]
    assert len(record["config_sha256"]) == 64


def test_report_has_a_provenance_section(study_dir):  # noqa: F811
    from fwi_attn.provenance import config_hash
    from fwi_attn.results.report import write_report

    md, _ = write_report(study_dir)
    text = md.read_text()
    section = text[text.index("## Provenance"):]
    config = yaml.safe_load((study_dir / "config.yaml").read_text())
    assert config_hash(config) in section and "numpy" in section and "commit" in section


# ----------------------------------------------------------------------------- torch-free results

TORCH_FREE = """
import sys
from fwi_attn.results.study import load_study
from fwi_attn.results.report import build_markdown
from fwi_attn.results.tables import comparison_table
study = load_study(sys.argv[1])
build_markdown(study)
comparison_table(study)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_loading_a_study_and_building_its_report_do_not_import_torch(study_dir):  # noqa: F811
    env_path = str(REPO)
    probe = subprocess.run([sys.executable, "-c", "import sys, fwi_attn.learn.metrics; print('torch' in sys.modules)"],
                           check=False, capture_output=True, text=True, cwd=REPO, env={"PYTHONPATH": env_path})
    if probe.stdout.strip() == "True":
        pytest.skip("fwi_attn.learn.metrics (the metric names) still imports torch")
    done = subprocess.run([sys.executable, "-c", TORCH_FREE, str(study_dir)], check=False, capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": env_path})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


TORCH_FREE_FIGURES = """
import sys
from fwi_attn.config import load_config
from fwi_attn.results.figures import draw_comparison_figures
draw_comparison_figures(load_config(sys.argv[1]))
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_comparison_figures_do_not_import_torch(study_dir):  # noqa: F811
    """`fwi-attn figures --compare` reads result files only: torch stays unloaded."""
    env = {"PYTHONPATH": str(REPO)}
    for needed in ("fwi_attn.learn.metrics", "fwi_attn.learn.evaluate"):  # the readers the figures import
        probe = subprocess.run([sys.executable, "-c", f"import sys, {needed}; print('torch' in sys.modules)"],
                               check=False, capture_output=True, text=True, cwd=REPO, env=env)
        if probe.stdout.strip() == "True":
            pytest.skip(f"{needed} (metric names; the attention.h5 reader) still imports torch")
    done = subprocess.run([sys.executable, "-c", TORCH_FREE_FIGURES, str(study_dir / "config.yaml")], check=False,
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_metric_names_are_the_metrics_modules():
    import fwi_attn.learn.metrics as metrics
    import fwi_attn.results.study as study

    assert study.METRICS is metrics.METRICS and study.POOLED is metrics.POOLED


# ----------------------------------------------------------------------------- screening attention

def _attention(variant, seed, rng):
    return {"schema": "fwi-attn-attention-salt/1", "variant": variant, "seed": seed, "indices": list(range(N_TEST)),
            "levels": {"encoder.1.attn": {"kind": "attention", "shape": [8, 8], "stride": 2,
                                          "salt_auc": rng.uniform(0.55, 0.9, N_TEST).tolist(),
                                          "boundary_auc": rng.uniform(0.4, 0.6, N_TEST).tolist()}}}


def test_screening_runs_are_described_not_compared(tmp_path, tiny_dict):
    """In a two-stage study a screening run scored on test (metrics.json and attention_salt.json in
    its folder) is kept out of the confirmatory arms and scored, alone, in the report's attention
    section as descriptive."""
    from fwi_attn.io.files import write_json
    from fwi_attn.results.report import build_markdown
    from fwi_attn.results.study import load_study
    from fwi_attn.results.tables import attention_salt_table

    rng = np.random.default_rng(5)
    root = tmp_path / "results" / "hand"
    raw = tiny_dict
    raw["study"]["confirm"] = {"top": 1, "seeds": [10, 11]}
    config = hand_config(tmp_path, raw)
    config["study"]["variants"] = ["none", "cbam", "se"]
    for v, seeds in {"none": [0, 10, 11], "cbam": [0, 10, 11], "se": [0]}.items():
        for s in seeds:
            d = root / v / f"seed{s}"
            d.mkdir(parents=True)
            write_json(d / "metrics.json", metrics_record(v, s, rng.uniform(0.2, 0.4, N_TEST)))
            if v != "none":
                write_json(d / "attention_salt.json", _attention(v, s, rng))
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    study = load_study(root)
    assert sorted(study.metrics) == [("cbam", 10), ("cbam", 11), ("none", 10), ("none", 11)]
    assert sorted(study.screening_attention) == [("cbam", 0), ("se", 0)]
    confirm = attention_salt_table(study)
    screen = attention_salt_table(study, screening=True)
    assert [(r["variant"], r["n_seeds"]) for r in confirm] == [("cbam", 2)]
    assert [(r["variant"], r["n_seeds"]) for r in screen] == [("cbam", 1), ("se", 1)]
    md = build_markdown(study)
    section = md[md.index("## Attention and salt"):]
    assert "screening runs; descriptive" in section and "| se |" in section
    assert "| se |" not in md[:md.index("## Attention and salt")]
