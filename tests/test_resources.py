"""What each workflow job asks a scheduler for (fwi_attn.resources): memory and run time follow
the survey and the network's size, the tiny study stays small, a paper-size shard fits in its
generate job, and GPUs are asked for only by CUDA studies."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import TINY

from fwi_attn.catalogue import TRAIN_COST
from fwi_attn.config import load_config
from fwi_attn.resources import BASE_MB, CUDA_MB, LIGHT_MB, MIN_RUNTIME, TORCH_RULES, job_resources, train_cost

PRESETS = Path(__file__).resolve().parent.parent / "workflows" / "config"
RULES = ("study_config", "generate", "preview", "stats", "train", "evaluate", "evaluate_mean", "physics", "refine",
         "figures_run", "figures_compare", "report", "notebook")


SCHEMA = yaml.safe_load((Path(__file__).resolve().parent.parent / "fwi_attn" / "config" / "schema.yaml").read_text())
needs_processes = pytest.mark.skipif(
    "processes" not in SCHEMA["properties"]["train"]["properties"],
    reason="train.processes (torchrun training) is not a key of fwi_attn/config/schema.yaml yet")


def paper(edit=None, device="cpu"):
    """The paper preset (large enough that no estimate sits at its floor), edited."""
    raw = yaml.safe_load((PRESETS / "paper.yaml").read_text())
    raw["study"]["device"] = device
    if edit:
        edit(raw)
    return load_config(raw)


@pytest.mark.parametrize("rule", ["generate", "physics", "refine", "train", "evaluate"])
def test_more_shots_and_time_steps_ask_for_more(rule):
    small = job_resources(paper(), rule)
    big = job_resources(paper(lambda c: c["survey"].update(n_shots=58, nt=4000)), rule)
    assert big["mem_mb"] > small["mem_mb"]
    assert big["runtime"] >= small["runtime"]
    if rule in ("generate", "train", "refine"):  # above the floor: grows with the work
        assert big["runtime"] > small["runtime"]


def test_a_larger_grid_asks_for_more_simulation_memory_and_time():
    small = job_resources(paper(), "generate")
    big = job_resources(paper(lambda c: c["survey"].update(nz=402, nx=602, nt=4000, receiver_x=[0.0, 6000.0])), "generate")
    assert big["mem_mb"] > small["mem_mb"] and big["runtime"] > small["runtime"]


def test_a_wider_network_asks_for_more_training_memory_and_time():
    narrow = job_resources(paper(lambda c: c["model"].update(width=16)), "train")
    wide = job_resources(paper(lambda c: c["model"].update(width=64)), "train")
    assert wide["mem_mb"] > narrow["mem_mb"] and wide["runtime"] > narrow["runtime"]


def test_more_threads_shorten_the_runtime_not_the_memory():
    one = job_resources(paper(lambda c: c["study"].update(threads=1)), "train")
    eight = job_resources(paper(lambda c: c["study"].update(threads=8)), "train")
    assert eight["runtime"] < one["runtime"] and eight["mem_mb"] == one["mem_mb"]


@needs_processes
def test_torchrun_processes_each_hold_a_batch_and_split_the_epochs():
    one = job_resources(paper(), "train")
    four = job_resources(paper(lambda c: c["train"].update(processes=4)), "train")
    assert four["mem_mb"] > one["mem_mb"] + 3 * BASE_MB * 0.9
    assert four["runtime"] < one["runtime"]


def test_the_tiny_study_fits_well_under_24_gb_and_the_floor_time():
    cfg = load_config(copy.deepcopy(TINY))
    for rule in RULES:
        res = job_resources(cfg, rule)
        assert min(BASE_MB, LIGHT_MB) <= res["mem_mb"] <= 2000, (rule, res)
        assert res["mem_mb"] >= (BASE_MB if rule in TORCH_RULES else LIGHT_MB), (rule, res)
        assert res["runtime"] == MIN_RUNTIME, (rule, res)


def test_paper_generate_memory_holds_a_whole_shard():
    cfg = load_config("paper")
    s, ds = cfg.survey, cfg.datasets[cfg.study.dataset]
    shard_bytes = ds.shard_size * (s.n_shots * s.nt * s.n_receivers + s.nz * s.nx) * 4
    mem_bytes = job_resources(cfg, "generate")["mem_mb"] * 2**20
    # The shard's gathers as simulated and as written, beside the interpreter.
    assert mem_bytes >= 2 * shard_bytes + BASE_MB * 2**20
    assert mem_bytes < 64 * 2**30  # still fits an ordinary GPU node


def test_gpus_only_for_cuda_studies_and_only_for_torch_rules():
    for device in ("cpu", "auto"):
        cfg = paper(device=device)
        assert not [r for r in RULES if "gpu" in job_resources(cfg, r)], device
    cuda = paper(device="cuda")
    asking = {r: job_resources(cuda, r).get("gpu") for r in RULES}
    assert {r for r, n in asking.items() if n} == set(TORCH_RULES)
    assert set(asking[r] for r in TORCH_RULES) == {1}


@needs_processes
def test_torchrun_training_asks_for_one_gpu_per_process():
    ddp = paper(lambda c: c["train"].update(processes=4), device="cuda")
    assert job_resources(ddp, "train")["gpu"] == 4 and job_resources(ddp, "evaluate")["gpu"] == 1


def test_host_memory_leaves_out_what_lives_on_the_gpu():
    # Wavefields and activations are on the GPU in a CUDA study; the host keeps the records and
    # the CUDA context.
    for rule in ("physics", "refine", "train"):
        on_host = job_resources(paper(device="cuda"), rule)["mem_mb"] - CUDA_MB
        assert on_host < job_resources(paper(), rule)["mem_mb"], rule


def test_training_costs_name_registered_variants():
    # A renamed variant would silently drop to cost 1 and lose its place in the scheduling order.
    from fwi_attn.nn.models import list_models

    assert set(TRAIN_COST) <= set(list_models())
    assert all(train_cost(v) >= 1.0 for v in list_models())
    assert train_cost("a-user-model") == 1.0
