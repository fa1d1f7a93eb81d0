"""`make recover` and the Makefile's core count, run through make itself.

make runs with ``VENV`` = this interpreter's environment and ``STAMP`` = a fresh file, so that its
``install`` step has nothing to do; everything else is the Makefile's own recipe.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import alive
from test_faults import PATIENCE_S, child_env, fault_env, start, uninterrupted_and_killed, wait_for_marker

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(target: str, tmp_path: Path, *args: str, cwd: Path = REPO, env: dict | None = None,
         makefile: Path | None = None) -> subprocess.CompletedProcess:
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than pyproject.toml: nothing to install
    cmd = ["make", "--no-print-directory", *(["-f", str(makefile)] if makefile else []), target,
           f"VENV={VENV}", f"STAMP={stamp}", *args]
    base = env or child_env()
    base = {**base, "PATH": f"{VENV / 'bin'}{os.pathsep}{base.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), base.get("PYTHONPATH", "")) if p)}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=base, timeout=PATIENCE_S)


def test_cores_are_the_cpus_available_whatever_omp_num_threads_says(tmp_path):
    proc = make("all", tmp_path, "-n", env=child_env(OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cores = re.findall(r"--cores (\S+)", proc.stdout)
    assert cores == [str(len(os.sched_getaffinity(0)))], proc.stdout


def _stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=PATIENCE_S)


def test_recover_refuses_while_a_snakemake_run_is_in_the_folder(tmp_path):
    """A real snakemake run (a job that sleeps) in the folder make runs in: refused, naming its pid.
    The Makefile is run from that folder with ``-f``, so its folder is the run's."""
    (tmp_path / "Snakefile").write_text(
        'rule sleep:\n    output: "done"\n    shell: "echo $$ > started.tmp; mv started.tmp started; sleep 300; touch {output}"\n')
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    (tmp_path / "pyproject.toml").touch()  # what the Makefile's install step depends on
    run = start([sys.executable, "-m", "snakemake", "--cores", "1", "done"], tmp_path / "run.log", child_env(),
                cwd=tmp_path, start_new_session=True)
    try:
        wait_for_marker(tmp_path / "started", run, tmp_path / "run.log")  # the job is running
        proc = make("recover", tmp_path, f"CONFIG={config}", cwd=tmp_path, makefile=REPO / "Makefile")
    finally:
        _stop(run)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert f"a snakemake run (pid {run.pid}) is still running in {tmp_path}" in proc.stdout, proc.stdout
    assert "--unlock" not in proc.stdout  # refused before touching the lock


def test_recover_completes_a_killed_study_then_has_nothing_to_do(tmp_path, tiny_dict, tiny_dataset):
    """kill -9 of a real workflow run in its training, then `make recover` (while a shell whose
    command line mentions snakemake runs in the folder): the study ends equal to an uninterrupted
    one; a second `make recover` says there is nothing to recover and changes nothing."""
    raw = copy.deepcopy(tiny_dict)
    raw["study"].update(variants=["none"], seeds=[0])
    raw["physics"]["refine"]["enabled"] = False
    roots, configs, metrics = uninterrupted_and_killed(tmp_path, raw, tiny_dataset)

    # The killed run is `make all`'s command, in the folder `make recover` works in.
    marker, log = tmp_path / "stalled", tmp_path / "snakemake.log"
    proc = start([sys.executable, "-m", "snakemake", "--cores", "2", f"--configfile={configs['killed']}", "all"],
                 log, fault_env(tmp_path, "fwi_attn.learn.train.validate", marker, nth=2), cwd=REPO,
                 start_new_session=True)
    try:
        stalled = wait_for_marker(marker, proc, log)
    finally:
        _stop(proc)
    deadline = time.monotonic() + 60
    while alive(stalled) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(stalled)
    assert not metrics["killed"].exists()

    bystander = subprocess.Popen(["sh", "-c", "sleep 600; echo snakemake"], cwd=REPO, start_new_session=True)
    try:
        first = make("recover", tmp_path, f"CONFIG={configs['killed']}")
    finally:
        _stop(bystander)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    got, want = (json.loads(metrics[k].read_text())["mean"] for k in ("killed", "uninterrupted"))
    assert got == want
    assert (roots["killed"] / "results" / "tiny" / "report" / "report.html").is_file()

    files = {p: p.stat().st_mtime_ns for p in (roots["killed"] / "results").rglob("*") if p.is_file()}
    second = make("recover", tmp_path, f"CONFIG={configs['killed']}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "is complete; nothing to recover" in second.stdout, second.stdout
    assert {p: p.stat().st_mtime_ns for p in (roots["killed"] / "results").rglob("*") if p.is_file()} == files
