"""Fault injection: the pipeline's reliability promises, proven on the tiny config.

1. kill -9 and recovery. A process killed with SIGKILL leaves nothing at its final path, and
   the documented recovery ends bit-equal to a run that was never interrupted:
   ``fwi-attn generate`` killed while simulating or just before its rename, then re-run (the
   killed writer's temporary file is removed); ``fwi-attn train`` killed in its second epoch,
   then ``--resume``; a Snakemake study killed (whole process group) while a train job runs,
   then ``snakemake --unlock`` and ``snakemake --rerun-incomplete ... all`` (README). A second
   Snakemake run started meanwhile is refused by the lock.
2. Clear errors. Bad input, bad arguments and unwritable outputs fail with exit code 1 and
   exactly one line ``fwi-attn CMD: error: ...`` on stderr naming the file, key or argument at
   fault, no traceback, nothing at the final output path; unwritable outputs are refused
   before any simulation or training. A closed pipe is not an error. Snakemake's config
   errors name the file or key without a Python traceback.
3. Orphans. ``atomic_path`` removes the temporary files of dead writers beside its path and
   keeps those of live ones.

How a kill lands at a known point: child processes get ``tests``' fault injector as
``sitecustomize`` on ``PYTHONPATH`` (written into the test's temporary folder). With
``FWI_FAULT`` set, the n-th call of one function (``fwi_attn.data.simulate.forward``,
``fwi_attn.learn.train.validate``, ``os.replace``) writes the process id to a marker file and hangs
there; the test waits for the marker and sends SIGKILL. The command run is unchanged
(``python -m fwi_attn.cli ...``, ``fwi-attn`` inside Snakemake jobs).

Commands run as subprocesses where a real process matters (kills, pipes, another user, the
Snakemake runs) and in-process through :func:`fwi_attn.cli.main` elsewhere (cheaper: torch is
imported once); in-process runs report shown warnings as stderr lines too, as a terminal would.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from conftest import alive

from fwi_attn.io.hdf5 import seal

REPO = Path(__file__).resolve().parent.parent
SNAKEFILE = REPO / "Snakefile"
CLI = [sys.executable, "-m", "fwi_attn.cli"]
#: Safety net so that a broken test never hangs the suite; never asserted on.
PATIENCE_S = 600

FAULT_INJECTOR = r'''
"""Fault injector of tests/test_faults.py, on PYTHONPATH of that test's child processes only.

FWI_FAULT (JSON) = {"target": "module.function", "nth": n, "match": text or null, "marker": path}:
the n-th call of module.function (counting calls whose first argument contains `match`, when
given) writes this process's id to `marker` and hangs there, for the test to kill -9 it.
"""
import json
import os
import sys
import time

_spec = os.environ.get("FWI_FAULT")
if _spec:
    _spec = json.loads(_spec)
    _module, _, _name = _spec["target"].rpartition(".")

    def _wrap(owner):
        real = getattr(owner, _name)
        calls = [0]

        def stalled(*args, **kwargs):
            if _spec.get("match") is None or (args and _spec["match"] in str(args[0])):
                calls[0] += 1
                if calls[0] == _spec["nth"]:
                    with open(_spec["marker"] + ".part", "w") as f:
                        f.write(str(os.getpid()))
                    os.rename(_spec["marker"] + ".part", _spec["marker"])
                    deadline = time.monotonic() + 600  # never outlive a broken test for long
                    while time.monotonic() < deadline:
                        time.sleep(0.05)
                    os._exit(99)
            return real(*args, **kwargs)

        setattr(owner, _name, stalled)

    if _module in sys.modules:
        _wrap(sys.modules[_module])
    else:
        class _WrapOnImport:
            def find_spec(self, name, path=None, target=None):
                if name != _module:
                    return None
                for finder in sys.meta_path:
                    if finder is not self and hasattr(finder, "find_spec"):
                        spec = finder.find_spec(name, path, target)
                        if spec is not None:
                            break
                else:
                    return None
                sys.meta_path.remove(self)
                exec_module = spec.loader.exec_module

                def exec_and_wrap(module):
                    exec_module(module)
                    _wrap(module)

                spec.loader.exec_module = exec_and_wrap
                return spec

        sys.meta_path.insert(0, _WrapOnImport())
'''


# ----------------------------------------------------------------------------- helpers


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def cli(*args) -> Result:
    """``fwi-attn ARGS`` in this process: exit code, stdout, and stderr plus any shown warnings."""
    from fwi_attn.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
            warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else 1
    shown = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught
                    if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning)))
    return Result(rc, out.getvalue(), err.getvalue() + shown)


def child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("FWI_ATTN_DEBUG", "FWI_FAULT")}
    env.update(PYTHONHASHSEED="0", **extra)
    return env


def cli_process(*args, cwd: Path, prefix: tuple = (), env: dict | None = None) -> Result:
    """``fwi-attn ARGS`` as its own process (``prefix`` e.g. a setpriv command line)."""
    proc = subprocess.run([*prefix, *CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env or child_env(), timeout=PATIENCE_S)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def fault_env(folder: Path, target: str, marker: Path, nth: int = 1, match: str | None = None) -> dict:
    """Environment for a child that hangs at the ``nth`` call of ``target`` (see the module doc)."""
    injector = folder / "fault_injector"
    injector.mkdir(exist_ok=True)
    (injector / "sitecustomize.py").write_text(FAULT_INJECTOR)
    path = os.pathsep.join(p for p in (str(injector), os.environ.get("PYTHONPATH", "")) if p)
    return child_env(PYTHONPATH=path, FWI_FAULT=json.dumps(
        {"target": target, "nth": nth, "match": match, "marker": str(marker)}))


def start(cmd: list, log: Path, env: dict, **kwargs) -> subprocess.Popen:
    with open(log, "wb") as f:  # a file, not a pipe: a chatty child cannot block on a full pipe
        return subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env, **kwargs)


def wait_for_marker(marker: Path, proc: subprocess.Popen, log: Path) -> int:
    """Wait until the child reached its fault point; return the id of the process that did."""
    deadline = time.monotonic() + PATIENCE_S
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the child exited ({proc.returncode}) before reaching its fault point:\n"
                        f"{log.read_text(errors='replace')[-4000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the child never reached its fault point:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.05)
    return int(marker.read_text())


def kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=PATIENCE_S)
    assert proc.returncode == -signal.SIGKILL


def temp_files(path: Path) -> list[Path]:
    """Temporary files of writers of ``path`` (``.<name>.<host>.<pid>.<random>...tmp``) beside it."""
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir()
                  if p.name.startswith(f".{path.name}.") and p.name.endswith(".tmp"))


def assert_nothing_at(*paths: Path) -> None:
    for p in paths:
        assert not p.exists(), f"{p} exists"
        assert not temp_files(p), f"temporary files left beside {p}: {temp_files(p)}"


def assert_clear_error(res: Result, command: str, names: list) -> None:
    """Exit 1, one line ``fwi-attn COMMAND: error: ...`` naming every entry of ``names`` (a string,
    or a tuple of spellings of which one will do), no traceback."""
    assert res.returncode == 1, (res.returncode, res.stdout[-2000:], res.stderr[-4000:])
    assert "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{res.stderr}"
    assert lines[0].startswith(f"fwi-attn {command}: error: "), lines[0]
    missing = [n for n in names if not any(alt in lines[0] for alt in ((n,) if isinstance(n, str) else n))]
    assert not missing, f"the error does not name {missing}: {lines[0]}"


def write_yaml(path: Path, raw: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def write_config(root: Path, raw: dict, name: str = "tiny.yaml") -> Path:
    """``raw`` with data_dir and results_dir under ``root``, as ``root/name``."""
    raw = copy.deepcopy(raw)
    raw["study"].update(data_dir=str(root / "data"), results_dir=str(root / "results"))
    return write_yaml(root / name, raw)


def dataset_config(tiny_dataset, root: Path, **study) -> Path:
    """The tiny dataset's own config (its data, read only), results under ``root``."""
    raw = tiny_dataset["config"].to_dict()
    raw["study"].update(results_dir=str(root / "results"), **study)
    return write_yaml(root / "tiny.yaml", raw)


def uninterrupted_and_killed(tmp_path: Path, raw: dict, tiny_dataset) -> tuple[dict, dict, dict]:
    """Two copies of a one-run tiny study (``none`` seed 0), ``uninterrupted`` run to its
    metrics.json, ``killed`` left for the caller to interrupt: ``(roots, configs, metrics)``, each
    keyed by those names. The data are copies of the tiny dataset's shards (generation and its
    determinism are the generate test's business)."""
    roots = {name: tmp_path / name for name in ("uninterrupted", "killed")}
    configs = {}
    for name, root in roots.items():
        root.mkdir()
        configs[name] = write_config(root, raw)
        copy_dataset(tiny_dataset, root / "data")
    metrics = {name: root / "results" / "tiny" / "none" / "seed0" / "metrics.json" for name, root in roots.items()}
    snakemake(roots["uninterrupted"], "--cores", "2", "--configfile", configs["uninterrupted"],
              metrics["uninterrupted"])
    return roots, configs, metrics


def copy_dataset(tiny_dataset, data_dir: Path) -> Path:
    """Copy the tiny dataset's shards and stats.json (modification times kept) into ``data_dir``."""
    src_root = Path(tiny_dataset["dir"])
    for path in [p for split in tiny_dataset["shards"].values() for p in split] + [tiny_dataset["stats"]]:
        dst = data_dir / "salt" / Path(path).relative_to(src_root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dst)
    return data_dir / "salt"


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert list(wa) == list(wb)
    differ = [k for k in wa if not (wa[k].dtype == wb[k].dtype and torch.equal(wa[k], wb[k]))]
    assert not differ, f"{a} and {b} differ in {differ}"


def history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    args = list(args)
    if "--configfile" in args:  # it takes several values: bind the one file so a target may follow
        i = args.index("--configfile")
        args[i:i + 2] = [f"--configfile={args[i + 1]}"]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PATIENCE_S, env=env or child_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


# ----------------------------------------------------------------------------- 1. kill -9 and recovery


@pytest.mark.parametrize("target, match, temp_left", [
    ("fwi_attn.data.simulate.forward", None, False),
    ("os.replace", ".shard-0000.h5.", True),  # the temporary shard is complete, not yet renamed
], ids=["while-simulating", "before-rename"])
def test_generate_killed_leaves_nothing_and_rerun_is_bit_identical(tmp_path, tiny_dict, tiny_dataset,
                                                                   target, match, temp_left):
    config = write_config(tmp_path, tiny_dict)
    final = tmp_path / "out" / "shard-0000.h5"
    argv = ["generate", "--config", config, "--dataset", "salt", "--split", "train", "--shard", "0",
            "--out", final, "--quiet"]
    marker, log = tmp_path / "stalled", tmp_path / "generate.log"
    proc = start([*CLI, *argv], log, fault_env(tmp_path, target, marker, match=match), cwd=tmp_path)
    wait_for_marker(marker, proc, log)
    kill9(proc)

    assert not final.exists()
    left = temp_files(final)
    if temp_left:
        assert len(left) == 1 and f".{proc.pid}." in left[0].name, left
    else:
        assert left == []

    res = cli(*argv)  # the re-run
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in final.parent.iterdir()) == ["shard-0000.h5"]  # the orphan is gone
    reference = tiny_dataset["shards"]["train"][0]  # generated uninterrupted
    with h5py.File(final, "r") as got, h5py.File(reference, "r") as want:
        for name in ("velocity", "gathers"):
            a, b = got[name][()], want[name][()]
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name


def test_train_killed_mid_run_resumes_to_identical_weights_and_history(tmp_path, tiny_dataset):
    config = dataset_config(tiny_dataset, tmp_path)
    argv = ["train", "--config", config, "--variant", "none", "--seed", "0", "--epochs", "3", "--quiet"]
    killed, reference = tmp_path / "killed", tmp_path / "uninterrupted"
    marker, log = tmp_path / "stalled", tmp_path / "train.log"
    # Hang in epoch 2's validation: epoch 1 is saved, epoch 2's optimiser steps are lost.
    proc = start([*CLI, *argv, "--out", killed], log,
                 fault_env(tmp_path, "fwi_attn.learn.train.validate", marker, nth=2), cwd=tmp_path)
    wait_for_marker(marker, proc, log)
    assert (killed / "last.pt").is_file()
    kill9(proc)
    assert torch.load(killed / "last.pt", map_location="cpu", weights_only=True)["epoch"] == 1
    assert not temp_files(killed / "last.pt") and not temp_files(killed / "model.pt")

    resumed = cli_process(*argv, "--out", killed, "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout, resumed.stdout
    res = cli(*argv, "--out", reference)
    assert res.returncode == 0, res.stderr

    assert_same_weights(killed / "model.pt", reference / "model.pt")
    assert_same_weights(killed / "last.pt", reference / "last.pt")
    got, want = history(killed / "history.csv"), history(reference / "history.csv")
    assert len(want) == 3
    assert [(r["train_loss"], r["val_mae"]) for r in got] == [(r["train_loss"], r["val_mae"]) for r in want]
    assert got == want  # every column but the epoch's wall time, which history() drops


def test_snakemake_killed_during_training_recovers_to_identical_metrics(tmp_path, tiny_dict, tiny_dataset):
    raw = copy.deepcopy(tiny_dict)
    raw["study"].update(variants=["none"], seeds=[0])
    raw["train"]["epochs"] = 2
    raw["physics"]["refine"]["enabled"] = False
    roots, configs, metrics = uninterrupted_and_killed(tmp_path, raw, tiny_dataset)

    root, config = roots["killed"], configs["killed"]
    marker, log = tmp_path / "stalled", tmp_path / "snakemake.log"
    proc = start([sys.executable, "-m", "snakemake", "-s", SNAKEFILE, "--directory", root, "--cores", "2",
                  f"--configfile={config}", "all"], log,
                 fault_env(tmp_path, "fwi_attn.learn.train.validate", marker, nth=2), start_new_session=True)
    try:
        stalled = wait_for_marker(marker, proc, log)  # a train job, in epoch 2 of 2
        assert list((root / "results").rglob("last.pt")) == [metrics["killed"].parent / "last.pt"]

        # A second run meanwhile is refused: a plain one because the running job's outputs are
        # incomplete, one with --rerun-incomplete (as `make all` and the local profile run) by
        # the lock, before it deletes anything of the running job.
        running = {p: p.read_bytes() for p in metrics["killed"].parent.iterdir() if p.is_file()}
        for extra in ((), ("--rerun-incomplete",)):
            second = snakemake(root, "--cores", "1", *extra, "--configfile", config, "all", check=False)
            assert second.returncode != 0, second.stdout + second.stderr
        assert "lock" in (second.stdout + second.stderr).lower(), second.stdout + second.stderr
        assert {p: p.read_bytes() for p in metrics["killed"].parent.iterdir() if p.is_file()} == running
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=PATIENCE_S)
    deadline = time.monotonic() + 60
    while alive(stalled) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(stalled):
        os.kill(stalled, signal.SIGKILL)
        pytest.fail(f"the train job (pid {stalled}) survived killing Snakemake's process group")

    snakemake(root, "--unlock", "--configfile", config)
    snakemake(root, "--rerun-incomplete", "--cores", "2", "--configfile", config, "all")

    train_log = (root / "results" / "tiny" / "logs" / "train" / "none-seed0.log").read_text()
    assert "resuming" in train_log, train_log
    got, want = (json.loads(metrics[k].read_text())["mean"] for k in ("killed", "uninterrupted"))
    assert got == want
    left = [p for p in root.rglob("*.tmp") if ".snakemake" not in p.parts and "fault_injector" not in p.parts]
    assert not left, f"temporary files of killed writers were not removed: {left}"


# ----------------------------------------------------------------------------- 2. clear errors


class WorkStarted(BaseException):
    """Raised (past the CLI's error handler) when a refused command started simulating or training."""


def forbid_work(monkeypatch) -> None:
    """Simulation and training raise :class:`WorkStarted` from now on: a refusal must come first."""
    import fwi_attn.data.simulate
    import fwi_attn.learn.train

    def refuse(what):
        def started(*args, **kwargs):
            raise WorkStarted(f"{what} started before the command was refused")
        return started

    monkeypatch.setattr(fwi_attn.data.simulate, "simulate", refuse("simulation"))
    monkeypatch.setattr(fwi_attn.learn.train, "train_one_epoch", refuse("training"))


@pytest.fixture(scope="module")
def study(tiny_dataset, tmp_path_factory):
    """Real results of the tiny dataset: ``none`` and ``se`` trained 1 epoch, ``none`` and the
    mean baseline evaluated (read only; cases copy what they change)."""
    root = tmp_path_factory.mktemp("faults_study")
    config = dataset_config(tiny_dataset, root)
    folder = root / "results" / "tiny"
    for variant in ("none", "se"):
        res = cli("train", "--config", config, "--variant", variant, "--seed", "0", "--epochs", "1",
                  "--out", folder / variant / "seed0", "--quiet")
        assert res.returncode == 0, res.stderr
    res = cli("evaluate", "--config", config, "--checkpoint", folder / "none" / "seed0" / "model.pt",
              "--out", folder / "none" / "seed0", "--quiet")
    assert res.returncode == 0, res.stderr
    res = cli("evaluate", "--config", config, "--baseline", "mean", "--out", folder / "mean")
    assert res.returncode == 0, res.stderr
    return {"config": config, "dir": folder}


def _generate(config, out):
    return ["generate", "--config", config, "--dataset", "salt", "--split", "train", "--shard", "0",
            "--out", out, "--quiet"]


def _train(config, out, *more):
    return ["train", "--config", config, "--variant", "none", "--seed", "0", "--out", out, "--quiet", *more]


def _edited(ctx, section: str, **values) -> Path:
    raw = copy.deepcopy(ctx.raw)
    raw.setdefault(section, {}).update(values)
    return write_config(ctx.tmp, raw, "edited.yaml")


@dataclass
class Ctx:
    tmp: Path
    raw: dict  # the tiny config as a dict
    config: Path  # ... as a file, data and results under tmp
    data_config: Path  # the tiny dataset's config (its data), results under tmp
    request: pytest.FixtureRequest

    @property
    def study(self) -> dict:
        return self.request.getfixturevalue("study")

    @property
    def dataset(self) -> dict:
        return self.request.getfixturevalue("tiny_dataset")


def case_generate_out_under_a_file(ctx):
    afile = ctx.tmp / "afile"
    afile.write_text("not a folder\n")
    return _generate(ctx.config, afile / "shard.h5"), [str(afile)], [afile / "shard.h5"]


def case_generate_out_is_a_folder(ctx):
    folder = ctx.tmp / "outdir"
    folder.mkdir()
    return _generate(ctx.config, folder), [str(folder)], [folder / "shard-0000.h5"]


def case_train_out_is_a_file(ctx):
    afile = ctx.tmp / "afile"
    afile.write_text("not a folder\n")
    return _train(ctx.data_config, afile), [str(afile)], [afile / "model.pt", afile / "last.pt"]


def case_train_resume_truncated_last_pt(ctx):
    out = ctx.tmp / "run"
    out.mkdir()
    whole = (ctx.study["dir"] / "none" / "seed0" / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(whole[:len(whole) // 2])
    return (_train(ctx.data_config, out, "--resume"), [str(out / "last.pt")],
            [out / "model.pt", out / "history.csv"])


def case_train_epochs_0(ctx):
    out = ctx.tmp / "run"
    return _train(ctx.data_config, out, "--epochs", "0"), ["epochs"], [out / "model.pt", out / "last.pt"]


def case_train_stop_after_0(ctx):
    out = ctx.tmp / "run"
    return (_train(ctx.data_config, out, "--stop-after", "0"), [("--stop-after", "stop_after")],
            [out / "model.pt", out / "last.pt"])


def case_simulate_empty_npy(ctx):
    model = ctx.tmp / "empty.npy"
    np.save(model, np.zeros((0, 24, 32)))
    out = ctx.tmp / "out.h5"
    return ["simulate", model, "--config", ctx.config, "--out", out], [str(model)], [out]


def case_generate_device_tpu(ctx):
    out = ctx.tmp / "out" / "shard-0000.h5"
    return _generate(ctx.config, out) + ["--device", "tpu"], ["tpu"], [out]


def case_config_is_a_folder(ctx):
    folder = ctx.tmp / "confdir"
    folder.mkdir()
    out = ctx.tmp / "out" / "shard-0000.h5"
    return _generate(folder, out), [str(folder)], [out]


def case_config_not_utf8(ctx):
    config = ctx.tmp / "latin.yaml"
    config.write_bytes(b"\xff\xfe")
    out = ctx.tmp / "out" / "shard-0000.h5"
    return _generate(config, out), [str(config)], [out]


def case_config_empty(ctx):
    config = ctx.tmp / "empty.yaml"
    config.write_text("")
    out = ctx.tmp / "out" / "shard-0000.h5"
    return _generate(config, out), [str(config)], [out]


def case_survey_freq_nan(ctx):
    out = ctx.tmp / "out" / "shard-0000.h5"
    return _generate(_edited(ctx, "survey", freq=float("nan")), out), ["survey.freq"], [out]


def case_train_lr_nan(ctx):
    out = ctx.tmp / "run"
    return _train(_edited(ctx, "train", lr=float("nan")), out), ["train.lr"], [out / "model.pt", out / "last.pt"]


def case_dataset_seed_2_to_70(ctx):
    raw = copy.deepcopy(ctx.raw)
    raw["datasets"]["salt"]["seed"] = 2**70
    out = ctx.tmp / "out" / "shard-0000.h5"
    return _generate(write_config(ctx.tmp, raw, "edited.yaml"), out), ["datasets.salt.seed"], [out]


def case_n_shots_1000(ctx):
    out = ctx.tmp / "out" / "shard-0000.h5"
    return _generate(_edited(ctx, "survey", n_shots=1000), out), ["survey.n_shots"], [out]


def case_preview_nan_gathers(ctx):
    shard = ctx.tmp / "nan.h5"
    shutil.copy(ctx.dataset["shards"]["train"][0], shard)
    with h5py.File(shard, "r+") as f:
        f["gathers"][0, 0, 0, 0] = np.nan
        seal(f, {name: f[name][()] for name in f})  # written so (a simulation gone wrong): the checksum matches
    out = ctx.tmp / "preview.png"
    return ["preview", shard, "--out", out], [str(shard)], [out]


def case_report_truncated_metrics(ctx):
    src = ctx.study["dir"]
    raw = yaml.safe_load(ctx.study["config"].read_text())
    raw["study"]["results_dir"] = str(ctx.tmp / "results")
    config = write_yaml(ctx.tmp / "report.yaml", raw)
    folder = ctx.tmp / "results" / "tiny"
    for name in ("none/seed0/metrics.json", "none/seed0/model.pt", "none/seed0/history.csv",
                 "none/seed0/predictions.h5", "mean/metrics.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / name, folder / name)
    metrics = folder / "none" / "seed0" / "metrics.json"
    text = metrics.read_bytes()
    metrics.write_bytes(text[:len(text) // 2])
    report = folder / "report"
    return ["report", "--config", config], [str(metrics)], [report / "report.md", report / "report.html"]


def case_stats_stray_shard(ctx):
    data = copy_dataset(ctx.dataset, ctx.tmp / "data")
    shutil.copy(data / "train" / "shard-0000.h5", data / "train" / "extra.h5")
    raw = ctx.dataset["config"].to_dict()
    raw["study"].update(data_dir=str(ctx.tmp / "data"), results_dir=str(ctx.tmp / "results"))
    config = write_yaml(ctx.tmp / "stray.yaml", raw)
    (data / "stats.json").unlink()
    return ["stats", "--config", config], ["extra.h5"], [data / "stats.json"]


#: Each ``case_*(ctx)`` sets up one fault and returns ``(argv, names, finals)``: the command, what its
#: one error line must name, and the final output paths that must not exist afterwards.
ERROR_CASES = {name[len("case_"):].replace("_", "-"): fn for name, fn in list(globals().items())
               if name.startswith("case_")}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_refused_with_one_clear_line_and_nothing_written(case, tmp_path, tiny_dict, tiny_dataset, request,
                                                        monkeypatch):
    ctx = Ctx(tmp=tmp_path, raw=tiny_dict, config=write_config(tmp_path, tiny_dict),
              data_config=dataset_config(tiny_dataset, tmp_path), request=request)
    argv, names, finals = ERROR_CASES[case](ctx)
    forbid_work(monkeypatch)
    res = cli(*argv)
    assert_clear_error(res, argv[0], names)
    assert_nothing_at(*finals)
    if case != "train-resume-truncated-last-pt":
        assert not list(tmp_path.rglob("last.pt")), "training wrote a checkpoint"


def test_evaluate_into_another_runs_folder_is_refused_and_its_results_kept(tmp_path, study):
    folder = tmp_path / "results" / "tiny"
    shutil.copytree(study["dir"] / "none", folder / "none")
    shutil.copytree(study["dir"] / "se", folder / "se")
    before = {p: p.read_bytes() for p in (folder / "none" / "seed0").iterdir() if p.is_file()}
    checkpoint, out = folder / "se" / "seed0" / "model.pt", folder / "none" / "seed0"
    res = cli("evaluate", "--config", study["config"], "--checkpoint", checkpoint, "--out", out, "--quiet")
    assert_clear_error(res, "evaluate", [str(out), str(checkpoint)])
    assert {p: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # none's metrics.json untouched
    assert not temp_files(out / "metrics.json") and not temp_files(out / "predictions.h5")


def test_unwritable_folder_for_another_user_is_refused_before_simulating(tiny_dict):
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed: cannot run the command as another user")
    if os.geteuid() != 0:
        pytest.skip("setpriv --reuid needs root: this test runs as a non-root user already "
                    "(a read-only folder would not stop root, who ignores permissions)")
    root = Path(tempfile.mkdtemp(prefix="fwi-faults-"))  # pytest's tmp_path is private to root
    try:
        root.chmod(0o755)
        config = write_config(root, tiny_dict)
        config.chmod(0o644)
        readonly = root / "readonly"
        readonly.mkdir()
        readonly.chmod(0o555)
        out = readonly / "shard-0000.h5"
        res = cli_process(*_generate(config, out), cwd=root,
                          prefix=(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"))
        assert_clear_error(res, "generate", [str(readonly)])
        assert list(readonly.iterdir()) == []  # not even a temporary file was made
        assert stat.S_IMODE(readonly.stat().st_mode) == 0o555
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_output_closed_by_head_is_not_an_error(tmp_path, tiny_dataset):
    shards = [str(p) for split in tiny_dataset["shards"].values() for p in split]
    paths = shards * (300 // len(shards))  # ~200 kB of output: far more than a pipe holds
    proc = subprocess.run(["bash", "-c", 'set -o pipefail; "$@" | head -n 1', "bash", *CLI, "info", *paths],
                          capture_output=True, text=True, cwd=tmp_path, env=child_env(), timeout=PATIENCE_S)
    assert proc.stdout.startswith("file:"), proc.stdout
    assert proc.returncode == 141, (proc.returncode, proc.stderr)  # the pipe really closed on it
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_snakemake_config_error_names_the_key(tmp_path, tiny_dict):
    raw = copy.deepcopy(tiny_dict)
    raw["study"]["seeds"] = [0.0]
    proc = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", write_config(tmp_path, raw), "all", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "study.seeds" in out, out
    assert "Traceback" not in out, out


def test_make_names_a_missing_config_file(tmp_path):
    # Bare `snakemake --configfile missing.yaml` fails inside Snakemake with its own traceback
    # before the workflow is read; the project's entry point says it in one line first.
    proc = subprocess.run(["make", "-s", "-C", str(REPO), "configfile", f"CONFIG={tmp_path / 'no-such.yaml'}"],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and "no-such.yaml does not exist" in lines[0], proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


# ----------------------------------------------------------------------------- 3. orphans


def test_atomic_write_removes_dead_writers_temp_files_and_keeps_live_ones(tmp_path):
    from fwi_attn.io.files import atomic_path

    final = tmp_path / "metrics.json"
    host = socket.gethostname()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = finished.pid
    assert not alive(dead)
    orphan = tmp_path / f".{final.name}.{host}.{dead}.k3j9x2.tmp"
    live = tmp_path / f".{final.name}.{host}.{os.getppid()}.q8w1e5.tmp"
    other_host = tmp_path / f".{final.name}.elsewhere-{host}.{dead}.z7u4t0.tmp"  # a shared file system
    for p in (orphan, live, other_host):
        p.write_text("partial")

    with atomic_path(final) as tmp:
        tmp.write_text("{}\n")

    assert final.read_text() == "{}\n"
    assert not orphan.exists()
    assert live.exists() and other_host.exists()


@pytest.mark.parametrize("how", ["same-path", "other-path", "symlink", "copy"])
def test_repeated_inputs_are_refused_by_every_multi_input_command(tmp_path, tiny_dataset, tiny_dict, how):
    """One file given twice (the same path, another spelling of it, a link to it, or a copy of its
    content): predict, testset and physics, which pool their inputs' samples, refuse it in one line
    naming both, before any work. (`info` only describes each file it is given: a repeat is harmless.)"""
    shard = Path(tiny_dataset["shards"]["test"][0])
    twin = {"same-path": shard, "other-path": Path(f"{shard.parent}/../{shard.parent.name}/{shard.name}"),
            "symlink": tmp_path / "link.h5", "copy": tmp_path / "copy.h5"}[how]
    if how == "symlink":
        twin.symlink_to(shard)
    elif how == "copy":
        shutil.copy(shard, twin)
    expected = {"same-path": "is given twice", "other-path": "is the same file as",
                "symlink": "is the same file as", "copy": "holds the same data as"}[how]
    out = tmp_path / "pred.h5"
    res = cli("predict", "--checkpoint", tmp_path / "model.pt", "--data", shard, twin, "--out", out)
    assert_clear_error(res, "predict", ["--data", str(twin), expected, "count twice"])
    assert_nothing_at(out)

    models = tmp_path / "models"
    models.mkdir()
    np.save(models / "a.npy", np.full((1, 24, 32), 2500.0, np.float32))
    twin_model = {"same-path": models / "a.npy", "other-path": models / ".." / "models" / "a.npy",
                  "symlink": models / "b.npy", "copy": models / "c.npy"}[how]
    if how == "symlink":
        twin_model.symlink_to(models / "a.npy")
    elif how == "copy":
        shutil.copy(models / "a.npy", twin_model)
    config = write_config(tmp_path, tiny_dict)
    res = cli("testset", models / "a.npy", twin_model, "--config", config, "--name", "twice", "--out", tmp_path / "set")
    assert_clear_error(res, "testset", [str(twin_model), expected])
    assert not (tmp_path / "set").exists() or not list((tmp_path / "set").iterdir())

    from fwi_attn.io.predictions import write_predictions

    rng = np.random.default_rng(7)
    runs = tmp_path / "runs"
    velocity = rng.uniform(1500, 4500, (2, 24, 32)).astype(np.float32)
    preds = write_predictions(runs / "predictions.h5", velocity + 10, velocity, np.arange(2), shards=[shard],
                              variant="none", seed=0, dataset="tiny", split="test", checkpoint="model.pt")
    twin_preds = {"same-path": preds, "other-path": runs / ".." / "runs" / "predictions.h5",
                  "symlink": runs / "link.h5", "copy": runs / "copy.h5"}[how]
    if how == "symlink":
        twin_preds.symlink_to(preds)
    elif how == "copy":
        shutil.copy(preds, twin_preds)
    res = cli("physics", "--config", config, "--predictions", preds, twin_preds)
    assert_clear_error(res, "physics", ["--predictions", str(twin_preds), expected, "count twice"])
    assert_nothing_at(runs / "physics.json", runs / "gathers.h5")


def _torchrun_env() -> dict:
    env = {k: v for k, v in child_env(OMP_NUM_THREADS="1").items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def test_training_under_torchrun_fails_in_one_line_per_failure(tmp_path, tiny_dict):
    """The workflow's launcher (python -m fwi_attn.cli.torchrun, train.smk's TRAIN_LAUNCH): each
    process's own error line, exit status 1, no launcher log or ChildFailedError traceback; a
    process killed by a signal (it cannot say why itself) gets one line from the launcher."""
    config = write_config(tmp_path, tiny_dict)
    launch = [sys.executable, "-m", "fwi_attn.cli.torchrun", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run([*launch, "-m", "fwi_attn.cli", "train", "--config", str(config), "--variant", "transformer",
                           "--seed", "0", "--out", str(tmp_path / "run"), "--quiet"],
                          capture_output=True, text=True, env=_torchrun_env(), cwd=tmp_path, timeout=PATIENCE_S)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith("fwi-attn train: error: unknown variant 'transformer'") for line in lines), \
        proc.stderr
    assert len(lines) <= 2  # one per process at most

    script = tmp_path / "killed.py"
    script.write_text("import os, signal, time\n"
                      "if os.environ['RANK'] == '1':\n    os.kill(os.getpid(), signal.SIGKILL)\n"
                      "time.sleep(120)\n")
    proc = subprocess.run([*launch, str(script)], capture_output=True, text=True, env=_torchrun_env(), cwd=tmp_path,
                          timeout=PATIENCE_S)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("torchrun: error: process of rank 1 (pid ") and "killed by SIGKILL" in lines[0], lines


def test_the_workflow_trains_several_processes_through_the_one_line_launcher(tmp_path, tiny_dict):
    raw = copy.deepcopy(tiny_dict)
    raw["train"]["processes"] = 2
    proc = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--configfile", write_config(tmp_path, raw), "all")
    commands = [line for line in proc.stdout.splitlines() if " train --config" in line]
    assert commands and all("python -m fwi_attn.cli.torchrun --standalone --nproc_per_node=2 -m fwi_attn.cli train"
                            in line for line in commands), proc.stdout[-3000:]


# ----------------------------------------------------------------------------- 4. a full disk


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB file system (tmpfs) at ``tmp_path/disk``, unmounted afterwards; skipped where
    mounting is not permitted (not root, or a container without CAP_SYS_ADMIN)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free on ``disk``; delete it to free the space."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            f.write(b"\0" * max(free - leave, 0))
    return filler


def test_generate_into_a_full_disk_is_refused_before_simulating_and_reruns_once_freed(
        tmp_path, tiny_dict, small_disk, monkeypatch):
    config = write_config(tmp_path, tiny_dict)
    out = small_disk / "shard-0000.h5"
    argv = _generate(config, out)
    filler = fill(small_disk, 100_000)  # a shard of 8 samples needs ~330 kB
    forbid_work(monkeypatch)
    res = cli(*argv)
    assert_clear_error(res, "generate", [str(out), "needs about", "free", "free space"])
    assert_nothing_at(out)
    monkeypatch.undo()
    filler.unlink()
    res = cli_process(*argv, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert cli("info", out).returncode == 0


def test_training_into_a_full_disk_fails_in_one_line_and_reruns_once_freed(tmp_path, tiny_dataset, small_disk):
    """torch.save into a full disk (its own error is "unexpected pos"): one line naming the
    checkpoint, exit 1 (no traceback, no crash), nothing at a final path; after freeing space the
    same command completes."""
    config = dataset_config(tiny_dataset, tmp_path)
    out = small_disk / "none" / "seed0"
    argv = ["train", "--config", config, "--variant", "none", "--seed", "0", "--epochs", "1", "--out", out, "--quiet"]
    filler = fill(small_disk, 20_000)
    res = cli_process(*argv, cwd=tmp_path)
    assert_clear_error(res, "train", [("model.pt", "last.pt"), "no space left on the device", "free space"])
    assert_nothing_at(out / "last.pt", out / "model.pt", out / "history.csv")
    filler.unlink()
    res = cli_process(*argv, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (out / "model.pt").is_file() and (out / "history.csv").is_file()


def test_a_figure_into_a_full_disk_fails_in_one_line(tmp_path, tiny_dataset, small_disk):
    out = small_disk / "preview.png"
    fill(small_disk, 0)
    res = cli_process("preview", tiny_dataset["shards"]["train"][0], "--out", out, cwd=tmp_path)
    assert_clear_error(res, "preview", [str(out), "no space left on the device"])
    assert_nothing_at(out)


@pytest.mark.parametrize("name", ["attention.h5", "gathers.h5"])
def test_attention_and_gathers_into_a_full_disk_fail_cleanly(small_disk, name):
    """The result files beside predictions.h5 are built in memory and written in one plain write
    too: a full disk is one OutputError naming the file, and nothing is left at its path."""
    from fwi_attn.io.attention import write_attention
    from fwi_attn.io.files import OutputError
    from fwi_attn.io.gathers import Showcase, write_gathers

    rng = np.random.default_rng(3)
    path = small_disk / name
    fill(small_disk, 200_000)
    big = rng.standard_normal((8, 250, 64)).astype(np.float32)  # 512 kB per array
    with pytest.raises(OutputError, match=rf"{name}: no space left on the device"):
        if name == "attention.h5":
            write_attention(path, {"bottleneck.attn": big[0], "gates.1": big.reshape(-1, 64)},
                            velocity=rng.uniform(1500, 4500, (24, 32)), index=0, pad=(0, 0, 0, 0), variant="cbam",
                            seed=0, dataset="tiny", split="test", checkpoint="model.pt", salt_threshold=4000.0)
        else:
            xz = rng.uniform(0, 300, (8, 2))
            write_gathers(path, Showcase(index=0, observed=big, predicted=big, baseline=big,
                                         truth=rng.uniform(1500, 4500, (24, 32)),
                                         prediction=rng.uniform(1500, 4500, (24, 32)), dt=0.002, dx=10.0,
                                         source_xz=xz, receiver_xz=rng.uniform(0, 300, (64, 2)),
                                         attrs={"variant": "cbam", "seed": 0}))
    assert_nothing_at(path)


def test_an_hdf5_file_that_fills_the_disk_is_one_clean_error(small_disk):
    """HDF5 built in memory, written in one plain write: ENOSPC is an OutputError naming the file,
    with no HDF5 "Exception ignored" output and no crash of this very process."""
    from fwi_attn.io.files import OutputError, atomic_path
    from fwi_attn.io.hdf5 import write_h5

    path = small_disk / "big.h5"
    fill(small_disk, 200_000)
    with pytest.raises(OutputError, match=r"big.h5: no space left on the device: it needs more than the"):
        with atomic_path(path, suffix=".h5.tmp") as tmp:
            write_h5(tmp, lambda f: f.create_dataset("x", data=np.zeros(500_000, np.float32)))
    assert_nothing_at(path)
