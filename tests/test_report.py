"""Report statistics and the report bundle, on hand-made study folders (no training needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from scipy import stats

from fwi_attn.results.report import markdown_to_html, write_report
from fwi_attn.learn.metrics import pooled
from fwi_attn.results.study import (
    compare_runs,
    comparison_table,
    convergence,
    holm,
    load_study,
    rank_variants,
    ranking_markdown,
    seed_sample_values,
    table_markdown,
    write_table_csv,
)

N_TEST = 12
#: Per-variant offset of the per-sample MAE: cbam best, se worse than none.
OFFSETS = {"none": 0.30, "se": 0.33, "cbam": 0.25}


def _metrics(variant, seed, mae):
    mae = np.asarray(mae, dtype=float)
    per = {"mae": mae, "mse": (1.2 * mae) ** 2, "rmse": 1.2 * mae, "ssim": 1 - mae, "ssim_valid": 1 - 1.1 * mae,
           "mae_ms": 1500 * mae, "rmse_ms": 1800 * mae, "psnr": 20 - mae,
           "salt_iou": 0.8 - mae, "salt_boundary_f": 0.6 - mae}
    mean = {k: float(np.mean(v)) for k, v in per.items()}
    return {"variant": variant, "seed": seed, "dataset": "salt", "split": "test", "n_samples": len(mae),
            "n_params": 1000 + 10 * len(variant), "macs": 10**6, "time_per_sample_s": 0.002,
            "mean": mean, "pooled": pooled(per), "clipped": {"mean": mean, "pooled": pooled(per)},
            "per_sample": {k: v.tolist() for k, v in per.items()}}


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


def test_comparison_with_one_seed_a_side_is_the_paired_t_test():
    rng = np.random.default_rng(5)
    z = rng.uniform(0.2, 0.4, 30)
    y = z - 0.01 + rng.normal(0, 0.02, 30)
    res = compare_runs(y[None], z[None])
    lo, hi = stats.t.interval(0.95, 29, loc=(y - z).mean(), scale=stats.sem(y - z))
    assert res["mean_diff"] == pytest.approx((y - z).mean())
    assert (res["ci_low"], res["ci_high"]) == pytest.approx((lo, hi))
    assert res["p_value"] == pytest.approx(stats.ttest_rel(y, z).pvalue)
    assert res["seed_variance"] is False and res["seeds"] == [1, 1]


def test_comparison_of_pure_training_variance_is_students_test():
    # Every test sample alike within a run: only the runs (seeds) differ, so the comparison
    # reduces to Student's two-sample t test on the runs' means (one training variance).
    y_runs, z_runs = np.array([0.21, 0.25, 0.22]), np.array([0.30, 0.26, 0.29, 0.31])
    y, z = np.repeat(y_runs[:, None], 8, axis=1), np.repeat(z_runs[:, None], 8, axis=1)
    shape = np.linspace(0, 0.1, 8)  # a per-sample difficulty shared by both: cancels in the pairs
    res = compare_runs(y + shape, z + shape)
    student = stats.ttest_ind(y_runs, z_runs, equal_var=True)
    assert res["mean_diff"] == pytest.approx(y_runs.mean() - z_runs.mean())
    assert res["p_value"] == pytest.approx(student.pvalue, rel=1e-9)
    assert res["df"] == pytest.approx(len(y_runs) + len(z_runs) - 2, rel=1e-9)
    assert res["seed_variance"] is True


def _simulated_study(rng, seeds, n, delta, seed_sd, interaction_sd, noise_sd):
    difficulty = rng.normal(0, 0.05, n)
    y = 0.2 + delta + difficulty + rng.normal(0, interaction_sd, n) + rng.normal(0, seed_sd, (seeds, 1)) \
        + rng.normal(0, noise_sd, (seeds, n))
    z = 0.2 + difficulty + rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, noise_sd, (seeds, n))
    return y, z


@pytest.mark.parametrize("seeds, seed_sd, interaction_sd", [(2, 0.02, 0.005), (3, 0.01, 0.01), (5, 0.005, 0.02)])
def test_intervals_cover_the_true_difference_95_percent_of_the_time(seeds, seed_sd, interaction_sd):
    # 1000 simulated studies with a known difference and known variance between trainings:
    # the interval over seeds and samples covers the truth 93-97% of the time; one that ignores
    # the training variance (per-sample pairs of seed-averaged values) does not.
    rng = np.random.default_rng(2024 + seeds)
    delta, hits, naive_hits = -0.01, 0, 0
    for _ in range(1000):
        y, z = _simulated_study(rng, seeds, 48, delta, seed_sd, interaction_sd, 0.01)
        res = compare_runs(y, z)
        hits += res["ci_low"] <= delta <= res["ci_high"]
        naive = compare_runs(y.mean(axis=0)[None], z.mean(axis=0)[None])
        naive_hits += naive["ci_low"] <= delta <= naive["ci_high"]
    assert 0.93 <= hits / 1000 <= 0.97
    if seed_sd >= 0.01:
        assert naive_hits / 1000 < 0.85


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert holm([0.02, 0.9]) == pytest.approx([0.04, 0.9])


def test_convergence_from_the_validation_curve():
    falling = {"val_mae": np.array([0.5, 0.4, 0.33, 0.29, 0.26, 0.24, 0.22, 0.205])}
    flat = {"val_mae": np.array([0.5, 0.3, 0.25, 0.2401, 0.2399, 0.2402, 0.2400, 0.2398])}
    c = convergence(falling, 8)
    assert c["converged"] is False and c["slope"] < -0.005 and c["window"] == 3 and c["best_epoch"] == 8
    assert convergence(flat, 8)["converged"] is True
    stopped = convergence({"val_mae": flat["val_mae"][:6]}, 20)
    assert stopped["plateau"] and stopped["converged"]
    assert convergence({"val_mae": np.array([0.5, 0.4])}, 2)["converged"] is None


def test_identical_variants_differ_by_nothing(study_dir):
    import shutil

    shutil.copytree(study_dir / "none", study_dir / "gate")
    for s in (0, 1):
        path = study_dir / "gate" / f"seed{s}" / "metrics.json"
        path.write_text(path.read_text().replace('"variant": "none"', '"variant": "gate"'))
    study = load_study(study_dir)
    res = compare_runs(seed_sample_values(study, "gate"), seed_sample_values(study, "none"))
    assert res["mean_diff"] == 0 and res["p_value"] == 1.0 and res["ci_low"] == res["ci_high"] == 0


def test_rank_variants_best_first_with_paired_stats(study_dir):
    ranking = rank_variants(load_study(study_dir), "none", "mae")
    assert [e["variant"] for e in ranking] == ["cbam", "none", "se", "mean"]
    assert [e["rank"] for e in ranking] == [1, 2, 3, 4]
    assert "mean_diff" in ranking[0] and "mean_diff" not in ranking[1]
    cbam = ranking[0]
    study = load_study(study_dir)
    assert cbam["mean_diff"] == pytest.approx((_per_sample(study_dir, "cbam") - _per_sample(study_dir, "none")).mean())
    assert cbam["seeds"] == [2, 2] and cbam["n"] == N_TEST
    # Holm over the two networks compared with none; the corrected interval is wider.
    se = next(e for e in ranking if e["variant"] == "se")
    assert [cbam["p_holm"], se["p_holm"]] == pytest.approx(holm([cbam["p_value"], se["p_value"]]))
    assert cbam["ci_low_adj"] <= cbam["ci_low"] and cbam["ci_high_adj"] >= cbam["ci_high"]
    assert cbam["better"] == (cbam["significant"] and cbam["mean_diff"] < 0)
    assert cbam["detectable"] > 0
    assert study.mean is not None
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
    for text in ("# fwi-attn weekly report", "## Setup", "## Comparison", "## Ranking", "Holm",
                 "How the numbers are computed", "cannot be told apart",
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


def test_inversionnet_beside_openfwis_published_numbers(study_dir):
    import shutil

    from fwi_attn.results.report import published_markdown

    assert published_markdown(load_study(study_dir)) == ""  # no InversionNet, no OpenFWI family
    shutil.copytree(study_dir / "none", study_dir / "inversionnet")
    for s in (0, 1):
        path = study_dir / "inversionnet" / f"seed{s}" / "metrics.json"
        path.write_text(path.read_text().replace('"variant": "none"', '"variant": "inversionnet"'))
    config = yaml.safe_load((study_dir / "config.yaml").read_text())
    config["study"]["variants"].append("inversionnet")
    config["datasets"][config["study"]["dataset"]]["family"] = "curvevel"
    (study_dir / "config.yaml").write_text(yaml.safe_dump(config))
    md = published_markdown(load_study(study_dir))
    assert "| OpenFWI, CurveVel-A (published) | 0.0685 | 0.1273 | 0.8074 |" in md
    runs = [json.loads((study_dir / "none" / f"seed{s}" / "metrics.json").read_text())["pooled"] for s in (0, 1)]
    ours = np.mean([r["rmse"] for r in runs])
    assert f"| {np.mean([r['mae'] for r in runs]):.4f} | {ours:.4f} |" in md
    assert "## Against OpenFWI's published numbers" in write_report(study_dir)[0].read_text()
