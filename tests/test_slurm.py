"""The workflow on a real SLURM cluster: munged, slurmctld and slurmd of Debian's slurm-wlm on
127.0.0.1 (tests/slurm/cluster.py; installed with apt-get where missing and possible, else the
test is skipped with the reason). The tiny study runs through the project's SLURM profile layered
with a user's (tests/slurm/user-profile), and everything it computes must equal, bit for bit, what
the local run of the same config computed (the session's ``tiny_study``): statistics, shards,
predictions, checkpoints' weights and every metric value. Only timings and the paths of the two
study folders may differ.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO, alive, snakemake, tiny_study_dict, write_config
from slurm.cluster import LoopbackCluster, ensure_installed, stopped_on_signals, system_conf_in_use
from slurm.overhead import overheads, parse_log, summary

pytestmark = pytest.mark.slurm

PROFILES = ("--profile", str(REPO / "workflows" / "profiles" / "slurm"),
            "--profile", str(REPO / "tests" / "slurm" / "user-profile"))
# Keys of result files that hold a measured time or the host's free memory, not a computed value.
MEASURED = re.compile(r"(seconds|time|_s$|available_mib$)")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running loopback cluster; stopped (every daemon, by PID) however the tests end."""
    reason = ensure_installed() or system_conf_in_use()
    if reason:
        pytest.skip(reason)
    loop = LoopbackCluster(tmp_path_factory.mktemp("cluster"))
    started = []
    with stopped_on_signals(loop):
        loop.start()
        started = loop.pids()
        yield loop
    left = [pid for pid in started if alive(pid)]
    assert not left, f"daemons still running after stop: {left}"


@pytest.fixture(scope="module")
def slurm_study(cluster, tmp_path_factory):
    """The tiny study run by Snakemake's SLURM executor on the loopback cluster."""
    root = tmp_path_factory.mktemp("slurm-study")
    config = write_config(root, tiny_study_dict(root))
    start = time.monotonic()
    proc = snakemake(root, *PROFILES, "--configfile", str(config), "all", env=cluster.env(), timeout=1200)
    return {"root": root, "study": root / "results" / "tiny", "log": proc.stdout + proc.stderr,
            "seconds": time.monotonic() - start}


def test_heavy_jobs_ran_as_slurm_jobs_in_the_users_partitions(slurm_study, cluster):
    log = max((slurm_study["root"] / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    submitted = parse_log(log)
    assert len(submitted) >= 10, slurm_study["log"][-3000:]
    partitions = {}
    for job in submitted.values():
        out = subprocess.run(["scontrol", "show", "job", "-o", job["slurm"]], capture_output=True, text=True,
                             env=cluster.env(), check=True).stdout
        fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
        assert fields["JobState"] == "COMPLETED", out
        partitions.setdefault(fields["Partition"], set()).add(job["rule"])
    # train goes to the user's set-resources partition, everything else to their default one.
    assert partitions == {cluster.gpu_partition: {"train"},
                          cluster.partition: {"generate", "stats", "evaluate", "evaluate_mean", "physics", "refine",
                                              "figures_compare", "testset", "evaluate_testset",
                                              "evaluate_testset_mean", "compare_testset"}}, partitions
    log = slurm_study["log"]
    for rule in ("generate", "stats", "train", "evaluate", "physics", "refine", "figures_compare"):
        # A group job lists its jobs indented.
        assert re.search(rf"^\s*rule {rule}:", log, re.M), f"{rule} was not submitted"
    for rule in ("study_config", "preview", "figures_run", "report", "notebook"):
        assert re.search(rf"^localrule {rule}:", log, re.M), f"{rule} did not run on the submitting host"
    print(f"SLURM run of the tiny study: {len(submitted)} SLURM jobs, {slurm_study['seconds']:.0f} s")


def test_short_jobs_share_cluster_jobs_and_the_overhead_is_reported(slurm_study, cluster):
    """The scoring jobs (the workflow's `score` group, the profile's group-components) go several to
    a SLURM job. The overhead per job is printed for docs/benchmarks.md, never asserted (speed)."""
    _, rows = overheads(slurm_study["root"], cluster.env())
    grouped = [r for r in rows if r[2] > 1]
    assert grouped, rows
    for rules, *_ in grouped:
        assert set(rules.split("+")) <= {"evaluate", "evaluate_mean", "evaluate_testset", "evaluate_testset_mean",
                                         "compare_testset"}, rules
    print(f"SLURM run of the tiny study: {slurm_study['seconds']:.0f} s; {summary(rows)}")


def _shared_paths(study: Path) -> list[Path]:
    """The files a run computed (data/ and the study's data files), relative to the run's root."""
    root = study.parent.parent
    files = sorted(p.relative_to(root) for p in root.glob("data/**/*") if p.is_file())
    files += sorted(p.relative_to(root) for p in study.rglob("*")
                    if p.suffix in (".h5", ".pt", ".json", ".npy", ".csv") and "benchmarks" not in p.parts)
    return files


def _flat(value, key=""):
    """{dotted key: leaf} of a JSON value, measured times dropped."""
    if isinstance(value, dict):
        return {k: v for name, item in value.items() if not MEASURED.search(name)
                for k, v in _flat(item, f"{key}.{name}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{key}[{i}]").items()}
    return {key: value}


def _same_leaf(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _unrooted(text: str, root: Path) -> str:
    return text.replace(str(root), "<root>")


def _h5_contents(path: Path, root: Path) -> dict:
    """{name: (dtype, shape, bytes)} of every dataset and {name@attr: value} of every attribute."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            for k, v in obj.attrs.items():
                if k == "meta_sha256":  # covers the run's own folder names, compared unrooted one by one
                    continue
                out[f"{name}@{k}"] = _unrooted(v, root) if isinstance(v, str) else np.asarray(v).tobytes()
            if isinstance(obj, h5py.Dataset):
                data = obj[()]
                out[name] = (str(obj.dtype), obj.shape, np.asarray(data).tobytes())
        visit("/", f)
        f.visititems(visit)
    return out


def test_slurm_run_equals_the_local_run_bit_for_bit(slurm_study, tiny_study):
    local_root, slurm_root = tiny_study["root"], slurm_study["root"]
    local, remote = _shared_paths(tiny_study["study"]), _shared_paths(slurm_study["study"])
    assert local == remote, set(local) ^ set(remote)
    kinds = {}
    for rel in local:
        a, b = local_root / rel, slurm_root / rel
        kinds[rel.suffix] = kinds.get(rel.suffix, 0) + 1
        if rel.suffix == ".h5":
            assert _h5_contents(a, local_root) == _h5_contents(b, slurm_root), rel
        elif rel.suffix == ".pt":  # checkpoints: every weight, and the recorded epoch and score
            ca, cb = (torch.load(p, map_location="cpu", weights_only=False) for p in (a, b))
            for weights in ("state_dict", "best_state_dict"):  # last.pt keeps the best epoch's too
                assert ca.get(weights, {}).keys() == cb.get(weights, {}).keys(), (rel, weights)
                for name, tensor in ca.get(weights, {}).items():
                    assert torch.equal(tensor, cb[weights][name]), f"{rel}: {weights}.{name}"
            assert ca["epoch"] == cb["epoch"] and ca.get("val_mae") == cb.get("val_mae"), rel
        elif rel.suffix == ".json":  # metrics, physics, refinement, statistics: every value
            fa, fb = (_flat(json.loads(_unrooted(p.read_text(), r))) for p, r in ((a, local_root), (b, slurm_root)))
            fa.pop(".checkpoint_sha256", None), fb.pop(".checkpoint_sha256", None)  # the pickle holds the paths
            # A file's own checksum covers its measured seconds and its run's folder names too;
            # every other value is compared.
            fa.pop(".sha256", None), fb.pop(".sha256", None)
            # The config's hash covers its results_dir, which differs between the two runs.
            fa.pop(".provenance.config_sha256", None), fb.pop(".provenance.config_sha256", None)
            assert fa.keys() == fb.keys(), (rel, set(fa) ^ set(fb))
            differ = [k for k in fa if not _same_leaf(fa[k], fb[k])]
            assert not differ, f"{rel}: {[(k, fa[k], fb[k]) for k in differ[:5]]}"
        elif rel.suffix == ".csv":  # training history: every column but the epoch's seconds
            rows = [[line.split(",") for line in p.read_text().splitlines()] for p in (a, b)]
            keep = [i for i, name in enumerate(rows[0][0]) if not MEASURED.search(name)]
            assert [[r[i] for i in keep] for r in rows[0]] == [[r[i] for i in keep] for r in rows[1]], rel
        else:  # .npy (refined models), anything else in data/
            assert a.read_bytes() == b.read_bytes(), rel
    # Everything the comparison promises was there to compare.
    assert {".h5", ".pt", ".json", ".npy", ".csv"} <= set(kinds), kinds
    names = {p.name for p in local}
    assert {"stats.json", "shard-0000.h5", "predictions.h5", "model.pt", "metrics.json", "physics.json",
            "refine.json"} <= names
