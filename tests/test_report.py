"""Report statistics and the report bundle, on hand-made study folders (no training needed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from fwi_attn.learn.metrics import pooled
from fwi_attn.results.comparisons import compare_variants, comparisons_markdown
from fwi_attn.results.report import markdown_to_html, write_report
from fwi_attn.results.stats import compare_runs, holm
from fwi_attn.results.study import load_study, seed_sample_values
from fwi_attn.results.tables import comparison_table, convergence, table_markdown, write_table_csv

N_TEST = 12
#: Per-variant offset of the per-sample MAE: cbam best, se worse than none.
OFFSETS = {"none": 0.30, "se": 0.33, "cbam": 0.25}


def metrics_record(variant, seed, mae):
    mae = np.asarray(mae, dtype=float)
    per = {"mae": mae, "mse": (1.2 * mae) ** 2, "rmse": 1.2 * mae, "ssim": 1 - mae, "ssim_valid": 1 - 1.1 * mae,
           "mae_ms": 1500 * mae, "rmse_ms": 1800 * mae, "psnr": 20 - mae,
           "salt_iou": 0.8 - mae, "salt_iou_band": 0.85 - mae, "salt_boundary_f": 0.6 - mae}
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
            (d / "metrics.json").write_text(json.dumps(metrics_record(v, seed, mae)))
    (root / "mean").mkdir()
    base = metrics_record("mean", None, 0.5 + difficulty)
    base["n_params"] = 0
    (root / "mean" / "metrics.json").write_text(json.dumps(base))
    (root / "config.yaml").write_text(yaml.safe_dump(hand_config(tmp_path, tiny_dict)))
    return root


def hand_config(tmp_path, raw):
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


def test_convergence_only_where_the_schedule_lets_the_curve_say_so():
    falling = {"val_mae": np.array([0.5, 0.4, 0.33, 0.29, 0.26, 0.24, 0.22, 0.205])}
    flat = {"val_mae": np.array([0.5, 0.3, 0.25, 0.2401, 0.2399, 0.2402, 0.2400, 0.2398])}
    # A constant learning rate: the tail's slope is evidence.
    c = convergence(falling, 8, "none")
    assert c["converged"] is False and c["verdict"] == "budget-limited" and c["slope"] < -0.005
    assert c["window"] == 3 and c["best_epoch"] == 8
    assert convergence(flat, 8, "none")["verdict"] == "converged"
    # An annealing schedule flattens every tail: a run of its planned epochs is budget-limited.
    for scheduler in ("onecycle", "cosine"):
        annealed = convergence(flat, 8, scheduler)
        assert annealed["converged"] is False and annealed["verdict"] == "budget-limited"
        assert scheduler in annealed["evidence"]
    # A stop on a validation plateau (train.patience) is evidence under any schedule.
    stopped = convergence({"val_mae": flat["val_mae"][:6]}, 20, "onecycle")
    assert stopped["plateau"] and stopped["converged"] and stopped["verdict"] == "converged"
    assert convergence({"val_mae": np.array([0.5, 0.4])}, 2, "none")["verdict"] == "too few epochs"


def test_identical_variants_differ_by_nothing(study_dir):
    import shutil

    shutil.copytree(study_dir / "none", study_dir / "gate")
    for s in (0, 1):
        path = study_dir / "gate" / f"seed{s}" / "metrics.json"
        path.write_text(path.read_text().replace('"variant": "none"', '"variant": "gate"'))
    study = load_study(study_dir)
    res = compare_runs(seed_sample_values(study, "gate"), seed_sample_values(study, "none"))
    assert res["mean_diff"] == 0 and res["p_value"] == 1.0 and res["ci_low"] == res["ci_high"] == 0


def test_one_stage_family_compares_every_variant_with_the_reference(study_dir):
    study = load_study(study_dir)
    family = compare_variants(study, "mae")
    assert [(e["arm"], e["against"]) for e in family] == [("se", "none"), ("cbam", "none")]  # config order, no ranking
    cbam = family[1]
    assert cbam["mean_diff"] == pytest.approx((_per_sample(study_dir, "cbam") - _per_sample(study_dir, "none")).mean())
    assert cbam["seeds"] == [2, 2] and cbam["n"] == N_TEST and cbam["m"] == 2
    assert [e["p_holm"] for e in family] == pytest.approx(holm([e["p_value"] for e in family]))
    assert cbam["ci_low_adj"] <= cbam["ci_low"] and cbam["ci_high_adj"] >= cbam["ci_high"]
    assert cbam["better"] == (cbam["significant"] and cbam["mean_diff"] < 0)
    assert cbam["detectable"] > 0
    # The margin is study.margin times the reference's MAE.
    none_mae = comparison_table(study, metrics=("mae",))[0]["mae"]
    assert cbam["margin"] == pytest.approx(0.05 * none_mae)
    # Higher-is-better metrics: "better" means larger.
    ssim = compare_variants(study, "ssim")
    assert ssim[1]["better"] == (ssim[1]["significant"] and ssim[1]["mean_diff"] > 0)


def test_table_markdown_and_csv(study_dir, tmp_path):
    rows = comparison_table(load_study(study_dir))
    md = table_markdown(rows)
    assert md.count("\n") == len(rows) + 2
    cbam = next(line for line in md.splitlines() if line.startswith("| cbam"))
    assert "±" in cbam and "**" not in md  # point estimates: no cell marked best
    write_table_csv(rows, tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("variant,n_seeds,n_params,time_per_sample_s,mae,mae_std")
    assert len(lines) == len(rows) + 1


def test_markdown_to_html_embeds_images(tmp_path):
    import matplotlib.pyplot as plt

    from fwi_attn.results.style import figure_png

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
    for text in ("# fwi-attn weekly report", "## Setup", "## Comparison (test split)", "### Comparisons", "Holm",
                 "How the numbers are computed", "it detects MAE differences of", "mean-model baseline",
                 "input sign(x) log1p(10 (t/T)^2 |x|)", "attention at every level", "No control isolates attention",
                 "no free surface"):
        assert text in md
    assert "Best variant" not in md and "best" not in md.lower().replace("best epoch", "").replace("best val", "")
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


def test_comparisons_markdown_says_only_what_holds(study_dir):
    family = compare_variants(load_study(study_dir), "mae")
    md = comparisons_markdown(family, to_ms=1500.0)
    assert md.count("\n") == len(family) + 2
    for e, line in zip(family, md.splitlines()[2:]):
        assert line.startswith(f"| {e['arm']} − none |")
        word = "better" if e["better"] else "worse" if e["significant"] else "equivalent" if e["equivalent"] else "inconclusive"
        assert word in line


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


def _selection() -> dict:
    from fwi_attn.results.design import SELECTION_SCHEMA

    return {"schema": SELECTION_SCHEMA, "reference": "none", "selected": ["cbam"], "arms": ["cbam", "none"]}


def _attention_salt() -> dict:
    return {"schema": "fwi-attn-attention-salt/1", "variant": "cbam", "seed": 0, "indices": [0, 1],
            "levels": {"bottleneck.attn": {"salt_auc": [0.7, None], "boundary_auc": [0.6, None]}}}


@pytest.mark.parametrize("name", ["metrics.json", "physics.json", "refine.json", "attention_salt.json",
                                  "selection.json"])
def test_an_edited_json_result_is_refused_and_one_without_checksum_read(tmp_path, name):
    """JSON results are written with the sha256 of their content: read back they equal what was
    written; a value edited afterwards (the sha256 left in place) is refused in one line naming the
    file and the command that regenerates it; without the field (hand-made, or written before
    files carried it) the file is read as it is."""
    from fwi_attn.io.attention_salt import AttentionSaltError, read_attention_salt
    from fwi_attn.io.files import write_json
    from fwi_attn.results.design import SelectionError, read_selection, write_selection
    from fwi_attn.results.study import ReportError, read_json

    rng = np.random.default_rng(11)
    obj = {"metrics.json": metrics_record("cbam", 0, rng.uniform(0.1, 0.3, N_TEST)),
           "physics.json": {"variant": "cbam", "seed": 0, "mean": {"rel_l2": float(rng.uniform()),
                                                                   "rel_l2_reflection": None}},
           "refine.json": {"runs": [{"sample": 3, "final_mae": float(rng.uniform(10, 50))}]},
           "attention_salt.json": _attention_salt(),
           "selection.json": _selection()}[name]
    read, error, writer = {"metrics.json": (read_json, ReportError, "fwi-attn evaluate"),
                           "physics.json": (read_json, ReportError, "fwi-attn physics"),
                           "refine.json": (read_json, ReportError, "fwi-attn refine"),
                           "attention_salt.json": (read_attention_salt, AttentionSaltError, "fwi-attn evaluate"),
                           "selection.json": (read_selection, SelectionError, "fwi-attn select")}[name]
    path = tmp_path / "cbam" / "seed0" / name
    path.parent.mkdir(parents=True)
    (write_selection if name == "selection.json" else write_json)(path, obj)
    written = json.loads(path.read_text())
    assert len(written["sha256"]) == 64
    assert read(path) == json.loads(json.dumps(obj))  # without the field

    edited = json.loads(json.dumps(written))
    if name == "metrics.json":
        edited["mean"]["mae"] += 0.01
    elif name == "physics.json":
        edited["mean"]["rel_l2"] *= 0.5
    elif name == "refine.json":
        edited["runs"][0]["final_mae"] -= 1
    elif name == "attention_salt.json":
        edited["levels"]["bottleneck.attn"]["salt_auc"][0] = 0.9
    else:
        edited["selected"] = ["se"]
    path.write_text(json.dumps(edited, indent=2))
    with pytest.raises(error, match=rf"{name}: checksum mismatch.*regenerate it with `{writer}") as e:
        read(path)
    assert "\n" not in str(e.value)

    del edited["sha256"]
    path.write_text(json.dumps(edited))
    assert read(path) == edited


def test_an_edited_metrics_file_stops_the_report(tmp_path, study_dir):
    """A study whose metrics.json was edited after `fwi-attn evaluate` wrote it is refused as a whole."""
    from fwi_attn.io.files import write_json
    from fwi_attn.results.study import ReportError

    path = study_dir / "se" / "seed1" / "metrics.json"
    m = json.loads(path.read_text())
    write_json(path, m)  # as evaluate writes it
    load_study(study_dir)
    m = json.loads(path.read_text())
    m["mean"]["mae"] -= 0.1
    path.write_text(json.dumps(m))
    with pytest.raises(ReportError, match=r"se/seed1/metrics\.json: checksum mismatch.*`fwi-attn evaluate`"):
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


def test_every_registered_variant_has_its_own_fixed_colour():
    from matplotlib.colors import to_hex

    from fwi_attn.nn.models import list_models
    from fwi_attn.results.style import BASELINE_COLOR, variant_color

    colours = [to_hex(variant_color(v)) for v in list_models()]
    assert len(set(colours)) == len(colours), dict(zip(list_models(), colours))
    assert to_hex(BASELINE_COLOR) not in colours
    assert to_hex(variant_color("my_unet")) == to_hex(variant_color("my_unet"))  # a user model's: stable
