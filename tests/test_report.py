"""Report statistics and the report bundle, on hand-made study folders (no training needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from scipy import stats

from fwi_attn.results.report import markdown_to_html, write_report
from fwi_attn.results.study import (
    comparison_table,
    load_study,
    paired_comparison,
    rank_variants,
    ranking_markdown,
    table_markdown,
    write_table_csv,
)

N_TEST = 12
#: Per-variant offset of the per-sample MAE: cbam best, se worse than none.
OFFSETS = {"none": 0.30, "se": 0.33, "cbam": 0.25}


def _metrics(variant, seed, mae):
    mae = np.asarray(mae, dtype=float)
    per = {"mae": mae.tolist(), "rmse": (1.2 * mae).tolist(), "ssim": (1 - mae).tolist(),
           "mae_ms": (1500 * mae).tolist(), "rmse_ms": (1800 * mae).tolist(), "psnr": (20 - mae).tolist(),
           "salt_iou": (0.8 - mae).tolist(), "salt_boundary_f": (0.6 - mae).tolist()}
    return {"variant": variant, "seed": seed, "dataset": "salt", "split": "test", "n_samples": len(mae),
            "n_params": 1000 + 10 * len(variant), "macs": 10**6, "time_per_sample_s": 0.002,
            "mean": {k: float(np.mean(v)) for k, v in per.items()}, "per_sample": per}


@pytest.fixture
def study_dir(tmp_path, tiny_dict):
    """A study folder with variants none/se/cbam x seeds 0/1 and the mean baseline."""
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.0, 0.2, N_TEST)  # shared by all variants: what makes pairing matter
    root = tmp_path / "results" / "hand"
    for v, off in OFFSETS.items():
        for seed in (0, 1):
            mae = off + difficulty + rng.normal(0, 0.02, N_TEST)
            d = root / v / f"seed{seed}"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps(_metrics(v, seed, mae)))
    (root / "mean").mkdir()
    base = _metrics("mean", None, 0.5 + difficulty)
    base["n_params"] = 0
    (root / "mean" / "metrics.json").write_text(json.dumps(base))
    (root / "config.yaml").write_text(yaml.safe_dump(_config(tmp_path, tiny_dict)))
    return root


def _config(tmp_path, raw):
    from fwi_attn.config import load_config

    raw["study"].update(name="hand", variants=["none", "se", "cbam"], seeds=[0, 1],
                        results_dir=str(tmp_path / "results"), data_dir=str(tmp_path / "data"))
    return load_config(raw).to_dict()


def _per_sample(root, variant, metric="mae"):
    arrays = [json.loads((root / variant / f"seed{s}" / "metrics.json").read_text())["per_sample"][metric]
              for s in (0, 1)]
    return np.mean(arrays, axis=0)


def test_load_study_orders_variants_as_the_config(study_dir):
    study = load_study(study_dir)
    assert study.variants == ["none", "se", "cbam"]
    assert study.seeds("se") == [0, 1]
    assert study.mean["variant"] == "mean"
    assert load_study(study_dir, variants=["cbam"]).variants == ["cbam"]


def test_load_study_without_results_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.json"):
        load_study(tmp_path)


def test_comparison_table_mean_and_std_over_seeds(study_dir):
    rows = comparison_table(load_study(study_dir), metrics=("mae", "ssim"))
    by = {r["variant"]: r for r in rows}
    runs = [json.loads((study_dir / "se" / f"seed{s}" / "metrics.json").read_text())["mean"]["mae"] for s in (0, 1)]
    assert by["se"]["mae"] == pytest.approx(np.mean(runs))
    assert by["se"]["mae_std"] == pytest.approx(np.std(runs, ddof=1))
    assert by["se"]["n_seeds"] == 2
    assert rows[-1]["variant"] == "mean" and rows[-1]["mae_std"] is None


def test_paired_comparison_matches_scipy(study_dir):
    study = load_study(study_dir)
    res = paired_comparison(study, "cbam", "none", "mae")
    a, b = _per_sample(study_dir, "cbam"), _per_sample(study_dir, "none")
    diff = a - b
    lo, hi = stats.t.interval(0.95, len(diff) - 1, loc=diff.mean(), scale=stats.sem(diff))
    assert res.n == N_TEST
    assert res.mean_diff == pytest.approx(diff.mean())
    assert (res.ci_low, res.ci_high) == pytest.approx((lo, hi))
    assert res.p_value == pytest.approx(stats.wilcoxon(a, b).pvalue)
    assert res.statistic == pytest.approx(stats.wilcoxon(a, b).statistic)
    assert res.mean_diff < 0 and res.ci_high < 0  # cbam is built to be better than none


def test_paired_comparison_against_the_mean_baseline(study_dir):
    study = load_study(study_dir)
    res = paired_comparison(study, "none", "mean", "mae")
    base = np.asarray(json.loads((study_dir / "mean" / "metrics.json").read_text())["per_sample"]["mae"])
    assert res.mean_diff == pytest.approx((_per_sample(study_dir, "none") - base).mean())


def test_identical_variants_give_p_one(study_dir):
    import shutil

    shutil.copytree(study_dir / "none", study_dir / "gate")
    for s in (0, 1):
        path = study_dir / "gate" / f"seed{s}" / "metrics.json"
        path.write_text(path.read_text().replace('"variant": "none"', '"variant": "gate"'))
    res = paired_comparison(load_study(study_dir), "gate", "none")
    assert res.mean_diff == 0 and res.p_value == 1.0 and res.ci_low == res.ci_high == 0


def test_rank_variants_best_first_with_paired_stats(study_dir):
    ranking = rank_variants(load_study(study_dir), "none", "mae")
    assert [e["variant"] for e in ranking] == ["cbam", "none", "se", "mean"]
    assert [e["rank"] for e in ranking] == [1, 2, 3, 4]
    assert "mean_diff" in ranking[0] and "mean_diff" not in ranking[1]
    # Higher-is-better metrics rank the other way round.
    ssim = rank_variants(load_study(study_dir), "none", "ssim")
    assert ssim[0]["variant"] == "cbam"


def test_table_markdown_and_csv(study_dir, tmp_path):
    rows = comparison_table(load_study(study_dir))
    md = table_markdown(rows)
    assert md.count("\n") == len(rows) + 2
    cbam = next(line for line in md.splitlines() if line.startswith("| cbam"))
    assert "**" in cbam and "±" in cbam
    write_table_csv(rows, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("variant,n_seeds,n_params,time_per_sample_s,mae,mae_std")
    assert len(lines) == len(rows) + 1


def test_markdown_to_html_embeds_images(tmp_path):
    from fwi_attn.results.plots import figure_png

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1])
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "a.png").write_bytes(figure_png(fig))
    html = markdown_to_html("# T\n\n![a](figs/a.png)\n\n| x | y |\n|---|---|\n| 1 | 2 |\n", tmp_path)
    assert 'src="data:image/png;base64,' in html
    assert "figs/a.png" not in html
    assert "<table>" in html


def test_write_report_on_hand_made_results(study_dir):
    md_path, html_path = write_report(study_dir)
    md = md_path.read_text()
    assert md_path == study_dir / "report" / "report.md"
    for text in ("# fwi-attn weekly report", "## Setup", "## Comparison", "## Ranking", "Wilcoxon",
                 "Best variant: `cbam`", "mean-model baseline",
                 "input sign(x) log1p(10 (t/T)^2 |x|)", "attention at every level"):
        assert text in md
    # The figures of a real run are absent here: the report leaves them out instead of failing.
    assert "![" not in md
    assert html_path.read_text().startswith("<!DOCTYPE html>")


def test_report_command(study_dir, tmp_path):
    from fwi_attn.cli import main

    cfg = tmp_path / "hand.yaml"
    cfg.write_text((study_dir / "config.yaml").read_text())
    assert main(["report", "--config", str(cfg)]) == 0
    html = (study_dir / "report" / "report.html").read_text()
    assert "cbam" in html and "<table>" in html


def test_ranking_markdown_marks_significance(study_dir):
    ranking = rank_variants(load_study(study_dir), "none")
    md = ranking_markdown(ranking, "none")
    assert "| 1 | cbam |" in md and "reference" in md


def test_results_filed_under_another_run_are_refused(study_dir):
    from fwi_attn.results.study import ReportError

    path = study_dir / "none" / "seed0" / "metrics.json"
    m = json.loads(path.read_text())
    m["variant"] = "se"  # se's numbers written into none's folder
    path.write_text(json.dumps(m))
    with pytest.raises(ReportError, match="holds the results of se seed 0 but lies in the folder of none seed 0"):
        load_study(study_dir)


def test_stale_results_of_another_checkpoint_are_refused(study_dir):
    from fwi_attn.results.study import ReportError

    run = study_dir / "se" / "seed1"
    (run / "model.pt").write_bytes(b"a newer model")
    m = json.loads((run / "metrics.json").read_text())
    m["checkpoint_sha256"] = "0" * 64
    (run / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(ReportError, match="computed from another model"):
        load_study(study_dir)


def test_truncated_metrics_name_the_file(study_dir):
    from fwi_attn.results.study import ReportError

    path = study_dir / "cbam" / "seed0" / "metrics.json"
    path.write_text(path.read_text()[:50])
    with pytest.raises(ReportError, match=r"cbam/seed0/metrics.json: not a readable JSON result"):
        load_study(study_dir)


def test_setup_reads_attention_placement_from_what_was_built(study_dir):
    from fwi_attn.results.report import attention_placement

    built = {"none": {"attn": "none", "attn_levels": 3}, "se": {"attn": "se", "attn_levels": 3},
             "cbam": {"attn": "cbam", "attn_levels": 2}}  # as a registry cap would lower it
    for path in study_dir.glob("*/seed*/metrics.json"):
        m = json.loads(path.read_text())
        m["model"] = {"name": m["variant"], "kwargs": built[m["variant"]]}
        path.write_text(json.dumps(m))
    text = attention_placement(load_study(study_dir))
    assert text == "attention at the 3 coarsest levels (bottleneck included) (cbam: the 2 coarsest levels " \
                   "(bottleneck included))"
