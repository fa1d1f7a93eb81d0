"""The paper preset's rehearsal (workflows/config/rehearse.yaml over paper.yaml; `make rehearse`):
the whole workflow at the paper's real geometry (201 x 301 cells, 29 shots x 301 receivers x
2,000 samples, width 32, every variant, both stages, the family-transfer sets, one run's FWI
refinement) on a CPU, with a handful of samples and one epoch. It fails here, before a GPU is
paid for, on what only the real sizes show: shapes, memory, config and workflow errors. Each
job's request (fwi_attn.resources, through the rules) is checked against its measured peak
memory and time (its benchmark file). Minutes on two cores: marked slow (`make test-all`, CI).
"""
from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml
from conftest import REPO, snakemake

from fwi_attn import layout
from fwi_attn.config import load_config
from fwi_attn.layout import RUN, baseline_dir, run_dir
from fwi_attn.resources import MIN_RUNTIME

pytestmark = pytest.mark.slow

PRESETS = REPO / "workflows" / "config"
CONFIGS = (PRESETS / "paper.yaml", PRESETS / "rehearse.yaml")
#: The one run refined (`make rehearse` asks for it by path): the reference on the first confirmation seed.
REFINED = ("none", 1)

_spec = importlib.util.spec_from_file_location("rehearse_bench", REPO / "benchmarks" / "rehearse.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)


def layered(root: Path) -> dict:
    """paper.yaml with rehearse.yaml over it, as Snakemake merges two config files."""
    def merge(a, b):
        return {**a, **{k: merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
                        for k, v in b.items()}}
    raw = merge(*(yaml.safe_load(p.read_text()) for p in CONFIGS))
    raw["study"].update(data_dir=str(root / raw["study"]["data_dir"]), results_dir=str(root / "results"))
    return raw


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearse")
    raw = layered(root)
    cfg = load_config(raw)
    study = root / "results" / cfg.study.name
    refine = run_dir(study, *REFINED) / RUN.refine
    start = time.monotonic()
    # --configfiles: the helper binds a --configfile to one file, and both layers are needed.
    snakemake(root, "--cores", "2", "--configfiles", *map(str, CONFIGS), "--", "all", str(refine.relative_to(root)),
              timeout=1800)
    seconds = time.monotonic() - start
    print(f"rehearsal: {seconds:.0f} s on this machine")
    return {"root": root, "cfg": cfg, "study": study, "seconds": seconds}


def test_the_rehearsal_keeps_the_paper_geometry():
    paper = load_config(yaml.safe_load(CONFIGS[0].read_text()))
    cfg = load_config(layered(Path("/nonexistent")))
    for key in ("nz", "nx", "dx", "dt", "nt", "n_shots", "n_receivers", "accuracy", "pml_width", "freq"):
        assert getattr(cfg.survey, key) == getattr(paper.survey, key), key
    assert cfg.model.to_dict() == paper.model.to_dict()
    assert cfg.geology.to_dict() == paper.geology.to_dict()
    assert cfg.study.variants == paper.study.variants
    assert cfg.study.transfer_families and set(cfg.study.transfer_families) <= set(paper.study.transfer_families)
    assert cfg.study.confirm.seeds and cfg.study.confirm.controls
    assert cfg.study.device == "cpu"


def test_every_stage_ran_at_the_paper_size(rehearsal):
    study, cfg = rehearsal["study"], rehearsal["cfg"]
    selection = json.loads((study / "selection.json").read_text())
    for arm in selection["arms"]:
        for seed in cfg.study.confirm.seeds:
            for name in (RUN.metrics, RUN.physics, RUN.attention_salt):
                assert (run_dir(study, arm, seed) / name).is_file(), (arm, seed, name)
    # Every attention variant's screening run is scored against salt, not only the confirmed arms.
    for variant in cfg.study.variants:
        if variant not in ("none", "inversionnet"):
            assert (run_dir(study, variant, cfg.study.seeds[0]) / RUN.attention_salt).is_file(), variant
    for family in cfg.study.transfer_families:
        assert (baseline_dir(layout.test_set_results(study, f"transfer-{family}")) / RUN.metrics).is_file(), family
    refine = json.loads((run_dir(study, *REFINED) / RUN.refine).read_text())
    assert refine, "empty refine.json"
    assert (study / "report" / "report.md").is_file() and (study / "report" / "report.html").is_file()
    with h5py.File(run_dir(study, "none", cfg.study.confirm.seeds[0]) / RUN.predictions, "r") as f:
        assert f["prediction"].shape == (cfg.datasets["salt"].samples["test"], cfg.survey.nz, cfg.survey.nx)


def test_each_request_covers_its_measured_peak_within_3x(rehearsal):
    """fwi_attn.resources at the paper size against the rehearsal's benchmark files: no request
    below what a job used (a scheduler would kill it), none over 3x (it would wait for nothing).
    The figures are printed for docs/benchmarks.md."""
    root = rehearsal["root"]
    logs = sorted((root / ".snakemake" / "log").glob("*.snakemake.log"))
    jobs = bench.jobs_of(root, logs)
    print(bench.table(jobs, MIN_RUNTIME))
    total = sum(j.seconds for j in jobs)
    print(f"{len(jobs)} jobs, {total:.0f} s of job time ({total / 2:.0f} s on two quiet cores); "
          f"wall {rehearsal['seconds']:.0f} s")
    rules = {j.rule for j in jobs}
    assert {"generate", "stats", "train", "evaluate", "physics", "refine", "testset", "figures_compare",
            "report"} <= rules, rules
    failing = [f"{j.rule} ({Path(j.benchmark).name}): {p}" for j in jobs for p in j.problems(MIN_RUNTIME)]
    assert not failing, "\n".join(failing)
