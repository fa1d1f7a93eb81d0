"""The Snakemake workflow: lint, dry runs of every preset, a real run of the tiny study,
incremental re-runs, config validation, and the comparison notebook.

Snakemake runs in a temporary working directory (``--directory``), so tests never touch the
repository's ``results/``, ``data/`` or ``.snakemake/``.
"""
from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, SNAKEFILE, TINY, snakemake, write_config

from fwi_attn.layout import comparison_figure_paths, run_figure_paths

PRESETS = REPO / "workflows" / "config"


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count} (empty when nothing is to be done)."""
    out = proc.stdout + proc.stderr
    if "Job stats" not in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        jobs[m.group(1)] = int(m.group(2))
    jobs.pop("total", None)
    return jobs


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint", "--configfile", str(PRESETS / "default.yaml"))
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


@pytest.mark.parametrize("preset", ["default", "paper", "openfwi"])
def test_dry_run_of_each_preset(tmp_path, preset):
    cfg = yaml.safe_load((PRESETS / f"{preset}.yaml").read_text())
    proc = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(PRESETS / f"{preset}.yaml"), "all")
    jobs = planned_jobs(proc)
    from fwi_attn.config import load_config
    from fwi_attn.layout import shard_sizes

    full = load_config(PRESETS / f"{preset}.yaml")
    runs = len(full.study.variants) * len(full.study.seeds)
    ds = full.datasets[full.study.dataset]
    assert jobs["train"] == runs
    assert jobs["generate"] == sum(len(shard_sizes(ds.samples[s], ds.shard_size)) for s in ("train", "val", "test"))
    assert jobs["evaluate_mean"] == jobs["stats"] == 1
    if full.study.confirm.seeds:
        # Two stages: the screening is planned up to `select`; the checkpoint plans the rest.
        assert jobs["select"] == 1
        assert not {"physics", "figures_run", "report"} & set(jobs)
        # Only the attention variants' screening runs are scored on test (their attention against salt).
        attention = [v for v in full.study.variants if v not in ("none", "inversionnet")]
        assert jobs["evaluate"] == len(attention) * len(full.study.seeds)
    else:
        assert jobs["train"] == jobs["evaluate"] == runs
        assert jobs["figures_run"] == len(full.study.variants)  # each variant's first run: the report's appendix
        assert jobs["physics"] == len(full.study.variants)  # one job per variant checks its seeds' runs
        assert jobs["figures_compare"] == jobs["report"] == jobs["notebook"] == 1
        assert jobs.get("refine", 0) == (runs if full.physics.refine.enabled else 0)
    assert cfg["study"]["name"] == full.study.name


def planned_priorities(proc: subprocess.CompletedProcess) -> list[tuple[str, dict, float]]:
    """Each job of a dry run as (rule, wildcards, priority); Snakemake omits a priority of 0."""
    jobs = []
    # A group's jobs (the `score` group) are listed indented under it.
    for block in re.split(r"\n(?=\s*(?:local)?rule \w+:)", proc.stdout + proc.stderr):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m:
            continue
        wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        prio = re.search(r"^\s+priority: ([-\d.]+)$", block, re.M)
        wildcards = dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {}
        jobs.append((m.group(1), wildcards, float(prio.group(1)) if prio else 0.0))
    return jobs


def test_jobs_are_ordered_so_that_the_cores_stay_busy(tmp_path):
    """Data before everything, results of finished runs before new training, training seed by
    seed with the costlier variants first, per-run figures last (they fill the cores at the end).
    The default study's sizes in one stage (its screening seed and two more), where every job is planned."""
    raw = yaml.safe_load((PRESETS / "default.yaml").read_text())
    raw["study"].update(seeds=[0, 1], confirm={})
    config = tmp_path / "one-stage.yaml"
    config.write_text(yaml.safe_dump(raw))
    proc = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(config), "all")
    jobs = planned_priorities(proc)
    by_rule: dict[str, list[float]] = {}
    for rule, _, prio in jobs:
        by_rule.setdefault(rule, []).append(prio)
    train = {(w["variant"], int(w["seed"])): p for r, w, p in jobs if r == "train"}
    assert len(train) == 22
    assert min(by_rule["generate"]) > max(by_rule["evaluate"] + by_rule["physics"]) > max(train.values())
    assert min(by_rule["figures_compare"] + by_rule["report"] + by_rule["notebook"]) > max(train.values())
    assert max(by_rule["figures_run"] + by_rule["preview"]) < min(train.values())
    assert min(p for (v, s), p in train.items() if s == 0) > max(p for (v, s), p in train.items() if s == 1)
    for seed in (0, 1):
        assert train[("mask_hard", seed)] > train[("m2f", seed)] > train[("cbam", seed)] > train[("none", seed)]
    shards = {(w["split"], w["shard"]): p for r, w, p in jobs if r == "generate"}
    assert shards[("train", "0000")] > shards[("val", "0000")]  # 120 models against 48


def test_screening_evaluations_wait_for_training_and_go_before_the_fill(tmp_path):
    """A two-stage study scores its attention variants' screening runs on the test split (their
    attention against salt) only when no training job is ready: they never delay `select`."""
    proc = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(PRESETS / "default.yaml"), "all")
    jobs = planned_priorities(proc)
    train = [p for r, _, p in jobs if r == "train"]
    screening = {w["variant"]: p for r, w, p in jobs if r == "evaluate"}
    fill = [p for r, _, p in jobs if r == "preview"]
    assert screening and "none" not in screening and "inversionnet" not in screening
    assert max(fill) < min(screening.values()) <= max(screening.values()) < min(train)


def test_default_study_shape():
    """Both presets screen every attention variant and the baselines, then confirm on fresh seeds
    with the controls (the controls are not screened: they exist to be compared with)."""
    from fwi_attn.catalogue import CONTROLS
    from fwi_attn.config import load_config
    from fwi_attn.nn.models import list_models

    for study in (load_config("default").study, load_config("paper").study):
        assert set(study.variants) == set(list_models()) - set(CONTROLS)
        assert study.confirm.controls and len(study.confirm.seeds) >= 6
        assert not set(study.confirm.seeds) & set(study.seeds)


def test_without_configfile_the_default_study_is_used(tmp_path):
    proc = snakemake(tmp_path, "-n", "--cores", "1", "all")
    assert "results/default/selection.json" in proc.stdout + proc.stderr  # the default study's checkpoint


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["train"].update(epochs=0), "train"),
    (lambda c: c["study"].update(variants=["none", "transformer"]), "variants"),
    (lambda c: c["geology"].update(vmin=5000.0), "geology.vmin"),
    (lambda c: c["study"].update(colour="red"), "colour"),
    (lambda c: c["study"].update(reference="cbam"), "study.reference"),
    (lambda c: c["study"].update(test_sets=[{"name": "bp", "path": "no-such-models"}]), "study.test_sets bp"),
    (lambda c: c["study"].update(test_sets=[{"name": "transfer-flatfault", "path": "."}],
                                 transfer_families=["flatfault"]), "study.test_sets names must be unique"),
])
def test_invalid_config_is_rejected_naming_the_key(tmp_path, edit, key):
    raw = copy.deepcopy(TINY)
    edit(raw)
    proc = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(write_config(tmp_path, raw)), "all",
                     check=False)
    assert proc.returncode != 0
    assert key in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- the tiny study


def expected_outputs(study: Path) -> list[Path]:
    out = [study / "report" / n for n in ("report.md", "report.html", "compare_attention.ipynb")]
    out += [study / "figures" / "dataset_preview.png", study / "mean" / "metrics.json"]
    for v in TINY["study"]["variants"]:
        for s in TINY["study"]["seeds"]:
            run = study / v / f"seed{s}"
            out += [run / n for n in ("model.pt", "history.csv", "predictions.h5", "metrics.json", "attention.h5",
                                      "physics.json", "gathers.h5", "physics.png", "refine.json", "refine.png")]
            out += list(run_figure_paths(study, v, s).values())
    out += list(comparison_figure_paths(study).values())
    for name in ("mixed", "transfer-flatfault"):
        sets = study / "testsets" / name
        out += [sets / "mean" / "metrics.json", sets / "compare_sets.json", sets / "compare_sets.png"]
        out += [sets / v / "seed0" / f for v in TINY["study"]["variants"]
                for f in ("metrics.json", "predictions.h5", "attention.h5")]
    out.append(study / "figures" / "generalisation.png")
    return out


def test_tiny_study_produces_every_output(tiny_study):
    study = tiny_study["study"]
    missing = [str(p) for p in expected_outputs(study) if not p.is_file()]
    assert not missing, missing
    for png in study.glob("figures/**/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    # Every heavy job leaves a log and a benchmark.
    assert (study / "logs" / "train" / "se-seed0.log").is_file()
    assert (study / "benchmarks" / "train" / "se-seed0.tsv").is_file()
    table = (study / "figures" / "metrics_table.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in table[1:]] == ["none", "se", "mean"]


def test_test_sets_are_built_scored_and_labelled(tiny_study):
    """Each set is built from its source (files of three formats, or the flatfault family) on the
    study's survey, and every run and the mean model are scored on it under the set's name."""
    from fwi_attn.io.shard import read_shard

    data = tiny_study["root"] / "data" / "salt" / "testsets"
    mixed = json.loads((data / "mixed" / "testset.json").read_text())
    assert mixed["n_samples"] == 5 and [Path(f["path"]).name for f in mixed["files"]] == ["a.npy", "b.sgy", "c.mat"]
    shard = read_shard(data / "transfer-flatfault" / "shard-0000.h5", load=False)
    assert (shard.attrs["dataset"], shard.attrs["family"], shard.n) == ("transfer-flatfault", "flatfault", 4)
    assert shard.attrs["seed"] == TINY["datasets"]["salt"]["seed"]
    for name, n in (("mixed", 5), ("transfer-flatfault", 4)):
        root = tiny_study["study"] / "testsets" / name
        for run in ("none/seed0", "se/seed0", "mean"):
            m = json.loads((root / run / "metrics.json").read_text())
            assert (m["dataset"], m["split"], m["n_samples"]) == (name, "test", n), run
        compare = json.loads((root / "compare_sets.json").read_text())
        assert (compare["a"]["name"], compare["b"]["name"]) == ("train", name)


def test_tiny_report_has_a_generalisation_section(tiny_study):
    md = (tiny_study["study"] / "report" / "report.md").read_text()
    section = md.split("## Generalisation", 1)[1].split("\n## ", 1)[0]
    assert "pooled" in section and "over every cell" in section
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    labelled = {tuple(c.strip() for c in line.split("|")[1:3]) for line in rows}
    for variant in ("none", "se", "mean"):
        for name in ("test", "mixed", "transfer-flatfault"):
            assert (variant, name) in labelled, (variant, name)
    # The pooled MAE shown is metrics.json's, for the mean model on the transfer set.
    mean = json.loads((tiny_study["study"] / "testsets" / "transfer-flatfault" / "mean" / "metrics.json").read_text())
    mean_row = next(r for r in rows if r.startswith("| mean | transfer-flatfault |"))
    assert f"| {mean['pooled']['mae_ms']:.1f} | 1.00 |" in mean_row
    assert "### Family transfer" in section and "test: salt (in-distribution) | test: flatfault |" in section
    assert "### Distance from the training models" in section and "| mixed |" in section
    assert "../figures/generalisation.png" in section


def test_comparison_figures_read_only_result_files(tiny_study, tmp_path):
    """`fwi-attn figures --compare` draws from the runs' result files alone: it runs with every
    model.pt, the shards and stats.json gone, and loads neither a network nor the simulator."""
    import shutil

    study = tmp_path / "results" / "tiny"
    shutil.copytree(tiny_study["study"], study, ignore=shutil.ignore_patterns("*.pt", "figures", "report"))
    assert not list(study.rglob("*.pt"))
    raw = yaml.safe_load(tiny_study["config"].read_text())
    raw["study"].update(results_dir=str(tmp_path / "results"), data_dir=str(tmp_path / "no-data"))
    config = tmp_path / "copy.yaml"
    config.write_text(yaml.safe_dump(raw))
    # The predictions files name the original shards: hide the whole data folder meanwhile.
    data, hidden = tiny_study["root"] / "data", tiny_study["root"] / "data-hidden"
    code = ("import sys\nfrom fwi_attn.cli import main\nrc = main(['figures', '--config', sys.argv[1], '--compare'])\n"
            "print(sorted(m for m in ('fwi_attn.nn', 'fwi_attn.data.simulate') if m in sys.modules))\nsys.exit(rc)")
    data.rename(hidden)
    try:
        assert not (data / "salt" / "stats.json").exists()
        proc = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=600)
    finally:
        hidden.rename(data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
    for path in comparison_figure_paths(study).values():
        assert path.is_file(), path
    assert (study / "figures" / "gathers.png").stat().st_size > 10_000


def test_tiny_report_is_self_contained(tiny_study):
    report_dir = tiny_study["study"] / "report"
    md = (report_dir / "report.md").read_text()
    html = (report_dir / "report.html").read_text()
    assert "### Comparisons" in md and "Holm" in md and "../figures/metrics_bars.png" in md
    assert "**Answer: none possible.** Every arm on the test split has one seed" in md  # the tiny study's one seed
    assert html.count('src="data:image/png;base64,') >= 8
    assert 'src="../' not in html


def test_tiny_notebook_was_executed_by_the_workflow(tiny_study):
    nb = json.loads((tiny_study["study"] / "report" / "compare_attention.ipynb").read_text())
    tags = [c["metadata"].get("tags", []) for c in nb["cells"]]
    assert any("injected-parameters" in t for t in tags)
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("| se |" in "".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)


def test_notebook_runs_with_chosen_variants_and_metrics(tiny_study, tmp_path):
    import papermill

    out = tmp_path / "nb.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / "compare_attention.ipynb"), str(out), kernel_name="python3",
                               parameters={"study_dir": str(tiny_study["study"]), "variants": ["se"],
                                           "metrics": ["mae_ms", "ssim"], "reference": "se"},
                               progress_bar=False)
    text = out.read_text()
    assert "MAE (m/s)" in text and "| none |" not in text


def test_notebook_is_paired_with_its_script():
    import jupytext

    script = jupytext.read(REPO / "notebooks" / "compare_attention.py")
    notebook = jupytext.read(REPO / "notebooks" / "compare_attention.ipynb")
    assert [c.source for c in script.cells] == [c.source for c in notebook.cells]
    params = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "study_dir" in params[0].source


def test_nothing_to_do_after_a_full_run(tiny_study):
    proc = snakemake(tiny_study["root"], "-n", "--cores", "2", "--configfile", str(tiny_study["config"]), "all")
    assert planned_jobs(proc) == {}


def test_deleting_one_output_recomputes_only_its_dependents(tiny_study):
    (tiny_study["study"] / "se" / "seed0" / "metrics.json").unlink()
    try:
        proc = snakemake(tiny_study["root"], "-n", "--cores", "2", "--configfile", str(tiny_study["config"]), "all")
    finally:  # re-running restores the study (later tests in this module see it whole)
        snakemake(tiny_study["root"], "--cores", "2", "--configfile", str(tiny_study["config"]), "all")
    # evaluate rewrites se's predictions, so se's refinement, figures and physics check (se's
    # job, over its seeds) follow; the comparison, report and notebook read every run. No
    # training, no data, nothing of none.
    assert planned_jobs(proc) == {"evaluate": 1, "physics": 1, "refine": 1, "figures_run": 1,
                                  "figures_compare": 1, "report": 1, "notebook": 1, "all": 1}
    assert (tiny_study["study"] / "se" / "seed0" / "metrics.json").is_file()


def test_editing_one_config_section_reruns_only_the_jobs_that_read_it(tiny_study, tmp_path):
    raw = yaml.safe_load(tiny_study["config"].read_text())
    raw["evaluate"] = {"n_examples": 2}
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(raw))
    record = tiny_study["study"] / "config.yaml"
    before = (record.read_bytes(), record.stat().st_mtime_ns)
    jobs = planned_jobs(snakemake(tiny_study["root"], "-n", "--cores", "2", "--configfile", str(edited), "all"))
    # The record of the config (and its readers) follow; no training, data or evaluation.
    assert jobs == {"study_config": 1, "figures_run": 2, "figures_compare": 1, "report": 1, "notebook": 1, "all": 1}
    # A dry run writes nothing: a study running meanwhile keeps the config it was started with.
    assert (record.read_bytes(), record.stat().st_mtime_ns) == before


def test_snakemake_report_has_captions(tiny_study, tmp_path):
    out = tmp_path / "smk-report.html"
    snakemake(tiny_study["root"], "--configfile", str(tiny_study["config"]), "--report", str(out))
    text = out.read_text(errors="replace")
    assert "attention" in text.lower() and "dataset_preview.png" in text


def test_local_profile_runs_the_workflow(tmp_path):
    proc = snakemake(tmp_path, "--profile", str(REPO / "workflows" / "profiles" / "default"), "-n",
                     "--configfile", str(write_config(tmp_path, TINY)), "all")
    assert planned_jobs(proc)["train"] == len(TINY["study"]["variants"]) * len(TINY["study"]["seeds"])


def test_slurm_profile_leaves_the_cluster_to_the_user():
    """The project's SLURM profile sets nothing a cluster names (partition, account) and no
    resources: those come from the rules (fwi_attn.resources) and from the user's own profile."""
    profile = yaml.safe_load((REPO / "workflows" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert not {"default-resources", "set-resources"} & set(profile)
    assert "slurm_partition" in yaml.safe_load((REPO / "tests" / "slurm" / "user-profile" / "config.yaml").read_text())[
        "default-resources"]


def test_parsing_the_workflow_imports_no_heavy_module():
    # Snakemake parses the workflow for every job and dry run: its imports must stay light.
    modules = sorted({m.group(1) for f in [SNAKEFILE, *(REPO / "workflows" / "rules").glob("*.smk")]
                      for m in re.finditer(r"^(?:from|import) (fwi_attn[.\w]*)", f.read_text(), re.M)})
    assert modules, "the workflow imports nothing from fwi_attn?"
    code = "".join(f"import {m}\n" for m in modules)
    code += "import sys\nprint(sorted(m for m in ('torch', 'deepwave', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the workflow's imports load {out.strip()}"


# ----------------------------------------------------------------------------- two stages


def test_two_stage_study_screens_selects_and_confirms_with_controls(tmp_path):
    """Screening on study.seeds (validation only), `select` as a checkpoint, then the selected
    variant, the reference and both controls on fresh seeds, compared on the test split."""
    import torch

    raw = copy.deepcopy(TINY)
    raw["study"].update(variants=["none", "m2f"], seeds=[0], confirm={"top": 1, "seeds": [1, 2]})
    config = write_config(tmp_path, raw)
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config), "all")
    study = tmp_path / "results" / "tiny"
    selection = json.loads((study / "selection.json").read_text())
    assert selection["selected"] == ["m2f"] and selection["scores"][0]["variant"] == "m2f"
    assert set(selection["controls"]) == {"none_salt", "none_wide"}
    assert selection["arms"] == ["m2f", "none", "none_salt", "none_wide"]
    # Screening runs are trained; an attention variant's is scored on the test split for its
    # attention maps against salt (descriptive), the plain UNet's not at all.
    assert (study / "m2f" / "seed0" / "history.csv").is_file()
    assert (study / "m2f" / "seed0" / "attention_salt.json").is_file()
    assert not (study / "none" / "seed0" / "metrics.json").exists()
    for arm in selection["arms"]:
        for seed in (1, 2):
            for name in ("model.pt", "metrics.json", "physics.json"):
                assert (study / arm / f"seed{seed}" / name).is_file(), (arm, seed, name)
    # The controls are what they say: none_wide at the selected width, none_salt with m2f's salt loss.
    wide = torch.load(study / "none_wide" / "seed1" / "model.pt", weights_only=True)
    assert wide["kwargs"]["width"] == selection["controls"]["none_wide"]["width"] != raw["model"]["width"]
    salted = torch.load(study / "none_salt" / "seed1" / "model.pt", weights_only=True)
    assert salted["kwargs"]["salt_heads"] is True and salted["kwargs"]["attn"] == "none"
    md = (study / "report" / "report.md").read_text()
    for text in ("## Screening (validation split; point estimates, no claims)", "## Confirmation (fresh seeds, test split)",
                 "| m2f − none |", "| m2f − none_salt |", "| m2f − none_wide |", "**Design**: 2 seeds an arm",
                 "budget-limited"):
        assert text in md, text
    assert "Answer" in md.split("## Setup")[0]
    # Finished: nothing left to do, the checkpoint included.
    proc = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(config), "all")
    assert planned_jobs(proc) == {}
