"""The GPU check: CUDA tests, the benchmarks' CUDA rows and a paper-preset mini study, in one run
sized for one H100/H200 (8 minutes), written into the GPU section of ``docs/benchmarks.md``.

    make gpu-check                                     # = python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --tiny --docs X.md  # the same stages at tiny size on the CPU

Stages, each a subprocess with its own time limit inside the whole run's ``--budget``:

1. **CUDA tests**: ``pytest -m cuda`` (the tests that need a GPU; skipped elsewhere);
2. **data generation**: ``bench_generate.py`` on the paper preset: samples/s, ours against bare
   deepwave, and the stencil's effective bandwidth as a fraction of the device's peak (its limit);
3. **training loop**: ``bench_train.py --device cuda``: samples/s in fp32, bf16, channels_last and
   ``torch.compile``, each against a plain PyTorch loop;
4. **physics**: ``bench_physics.py`` on the paper survey: physics-check time per sample and FWI
   iteration time, against bare deepwave;
5. **mini study**: ``snakemake all`` with ``workflows/config/paper.yaml`` and
   ``benchmarks/gpu_check_mini.yaml`` laid over it (a few dozen models, 2 epochs, every stage):
   wall time, per-rule job seconds, and the metrics table.

The section between the ``gpu-check`` markers of the docs file is replaced (atomically; the
section is appended with its markers if the file has none). A stage that fails or runs out of
time is recorded as such and makes the exit status 1. Without CUDA the script says so and exits
0, unless ``--tiny``: then every stage runs on the CPU at the tests' tiny size (24 x 32 cells,
3 shots), which checks this script's logic, not the GPU; a tiny run writes only to an explicit
``--docs`` (else it prints the section).
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
DOCS = REPO / "docs" / "benchmarks.md"
PAPER = REPO / "workflows" / "config" / "paper.yaml"
MINI = BENCH / "gpu_check_mini.yaml"
BEGIN, END = "<!-- gpu-check:begin -->", "<!-- gpu-check:end -->"
HEADING = "## GPU check: `make gpu-check`"
STAGES = ("tests", "generate", "train", "physics", "study")

#: Laid over the mini study for ``--tiny``: the tests' tiny survey and network, on the CPU.
TINY_OVERLAY = {
    "study": {"name": "gpu-check-tiny", "variants": ["none"], "device": "cpu", "threads": 1},
    "survey": {"nz": 24, "nx": 32, "dx": 10.0, "dt": 0.0025, "nt": 200, "freq": 12.0, "n_shots": 3,
               "source_x": [0.0, 310.0], "source_depth": 10.0, "n_receivers": 16, "receiver_x": [0.0, 310.0],
               "receiver_depth": 10.0, "accuracy": 8, "pml_width": 10, "models_per_call": 8},
    "geology": {"water": {"depth": [0.0, 40.0]}, "salt": {"bodies": [1, 2]}},
    "datasets": {"salt": {"samples": {"train": 8, "val": 4, "test": 4}, "shard_size": 8}},
    "model": {"width": 4, "depth": 2},
    "train": {"batch_size": 4},
    "physics": {"samples": 1, "refine": {"frequencies": [6.0]}},
}


class CheckError(ValueError):
    """The check cannot start: an unusable docs file or option."""


@dataclass
class Stage:
    """One stage's command, limit and outcome."""

    key: str
    title: str
    cmd: list[str]
    cap_s: float
    seconds: float = 0.0
    rc: int | None = None
    output: str = ""
    errors: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.timed_out


def run_stage(stage: Stage, limit_s: float, env: dict, cwd: Path) -> Stage:
    """Run ``stage.cmd`` for at most ``limit_s`` seconds; on time-out its whole process group
    (Snakemake's jobs too) is stopped."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(stage.cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        stage.output, stage.errors = proc.communicate(timeout=max(limit_s, 1.0))
        stage.rc = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            stage.output, stage.errors = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stage.output, stage.errors = proc.communicate()
        stage.rc, stage.timed_out = proc.returncode, True
    stage.seconds = time.perf_counter() - t0
    return stage


def merged_config(*layers: dict) -> dict:
    """Configs laid over each other as Snakemake lays several ``--configfile`` (its own merge)."""
    from snakemake.utils import update_config

    out: dict = {}
    for layer in layers:
        update_config(out, layer)
    return out


def plan(args, work: Path) -> list[Stage]:
    """The stages' commands for a GPU run, or for ``--tiny`` on the CPU."""
    py = sys.executable
    paper, mini = yaml.safe_load(PAPER.read_text()), yaml.safe_load(MINI.read_text())
    overlays = [PAPER, MINI]
    if args.tiny:
        tiny = work / "tiny-overlay.yaml"
        tiny.write_text(yaml.safe_dump(TINY_OVERLAY, sort_keys=False))
        overlays.append(tiny)
        bench_cfg = work / "tiny-study.yaml"
        bench_cfg.write_text(yaml.safe_dump(merged_config(paper, mini, TINY_OVERLAY), sort_keys=False))
        device, threads = "cpu", "1"
        generate = ["--preset", str(bench_cfg), "--samples", "2", "--repeats", "1"]
        training = ["--samples", "4", "--rounds", "1", "--config", str(bench_cfg)]
        physics = ["--config", str(bench_cfg), "--samples", "1", "--repeats", "1", "--iterations", "1",
                   "--payoff-samples", "1", "--payoff-iterations", "1"]
        cores = "2"
    else:
        bench_cfg = work / "paper-mini.yaml"
        bench_cfg.write_text(yaml.safe_dump(merged_config(paper, mini), sort_keys=False))
        device, threads = "cuda", "4"
        generate = ["--preset", str(PAPER), "--samples", "8", "--repeats", "2"]
        # The default preset's survey: its training data are generated on the CPU.
        training = ["--samples", "64", "--rounds", "2"]
        physics = ["--config", str(bench_cfg), "--samples", "2", "--repeats", "2", "--iterations", "2",
                   "--payoff-samples", "1", "--payoff-iterations", "3"]
        cores = str(os.cpu_count() or 4)
    snakemake = [py, "-m", "snakemake", "all", "-s", str(REPO / "Snakefile"), "--directory", str(work / "study"),
                 "--cores", cores, "--configfile", *map(str, overlays)]
    bench = [str(BENCH / "bench_generate.py"), str(BENCH / "bench_train.py"), str(BENCH / "bench_physics.py")]
    common = ["--device", device, "--threads", threads]
    return [
        Stage("tests", "CUDA tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *args.tests],
              90),
        Stage("generate", "Data generation", [py, bench[0], *common, *generate], 60),
        Stage("train", "Training loop", [py, bench[1], *common, *training], 90),
        Stage("physics", "Physics check and FWI iteration", [py, bench[2], "--proxy", *common, *physics], 60),
        Stage("study", "Paper-preset mini study", snakemake, 180),
    ]


def rule_seconds(study_dir: Path) -> list[tuple[str, int, float]]:
    """(rule, jobs, summed seconds) from the study's Snakemake ``benchmark:`` files."""
    rows = []
    for rule_dir in sorted(p for p in (study_dir / "benchmarks").glob("*") if p.is_dir()):
        seconds = []
        for tsv in rule_dir.glob("*.tsv"):
            with open(tsv, newline="") as f:
                seconds += [float(r["s"]) for r in csv.DictReader(f, delimiter="\t")]
        if seconds:
            rows.append((rule_dir.name, len(seconds), sum(seconds)))
    return rows


def fence(text: str, lines: int = 60) -> str:
    body = "\n".join(text.rstrip().splitlines()[-lines:])
    return f"```text\n{body}\n```"


def machine_line(tiny: bool) -> str:
    import deepwave
    import torch

    sys.path.insert(0, str(BENCH))
    from _common import cpu_name, peak_memory_bandwidth

    cpu = f"CPU (`lscpu`) {cpu_name()}, {os.cpu_count()} cores"
    versions = f"torch {torch.__version__}, deepwave {deepwave.__version__}"
    if tiny or not torch.cuda.is_available():
        return f"**Tiny CPU run** (`--tiny`: checks the script's stages, not a GPU); {cpu}; {versions}"
    props = torch.cuda.get_device_properties(0)
    peak = peak_memory_bandwidth(torch.device("cuda", 0))
    bandwidth = f", peak memory bandwidth {peak / 1e9:,.0f} GB/s" if peak else ""
    return (f"GPU **{props.name}** ({props.total_memory / 2**30:.0f} GiB{bandwidth}), CUDA {torch.version.cuda}; "
            f"{cpu}; {versions}")


def section(stages: list[Stage], args, total_s: float, work: Path) -> str:
    """The markdown between the markers."""
    now = dt.datetime.now(dt.UTC)
    lines = [BEGIN, "", f"Written by `benchmarks/gpu_check.py` on {now:%Y-%m-%d %H:%M} UTC "
             "(rerun `make gpu-check` to replace it; edits here are overwritten).", "",
             f"Machine: {machine_line(args.tiny)}.", "",
             f"Whole check: {total_s:.0f} s (budget {args.budget:.0f} s).", "",
             "| stage | seconds | result |", "|---|---:|---|"]
    for s in stages:
        if s.rc is None:
            result = "not run: the budget was spent"
        elif s.timed_out:
            result = f"**stopped at its limit** ({s.cap_s:.0f} s or what was left of the budget)"
        elif s.rc:
            result = f"**failed** (exit status {s.rc})"
        else:
            result = "ok"
        if s.key == "tests" and s.output.strip():
            result += f": {s.output.strip().splitlines()[-1].strip('= ')}"
        lines.append(f"| {s.title} | {s.seconds:.0f} | {result} |")
    for s in stages:
        if s.rc is None:
            continue
        shown = " ".join(shlex.quote(str(c)).replace(str(work), "$WORK").replace(str(REPO) + "/", "")
                         for c in s.cmd[1:])
        lines += ["", f"### {s.title}", "", f"`python {shown}`", ""]
        if s.output.strip():
            lines.append(fence(s.output))
        if s.key == "study" and s.ok:  # Snakemake logs every job to stderr: its closing lines say enough
            done = [ln.strip() for ln in s.errors.splitlines() if " steps (" in ln or ln.startswith("Elapsed time")]
            lines.append(fence("\n".join(done[-2:])))
        elif s.errors.strip() and (not s.ok or not s.output.strip()):  # else progress bars and warnings
            lines += ["", "stderr (end):", "", fence(s.errors, 25)]
        if s.key == "study":
            study = next((work / "study" / "results").glob("*"), None)
            rows = rule_seconds(study) if study else []
            if rows:
                lines += ["", "| rule | jobs | job seconds (sum) |", "|---|---:|---:|"]
                lines += [f"| {rule} | {n} | {sec:.1f} |" for rule, n, sec in rows]
            table = study / "figures" / "metrics_table.md" if study else None
            if table and table.is_file():
                lines += ["", "Metrics table (2 epochs on a few dozen models: a check of the path, not a result):",
                          "", table.read_text().strip()]
    lines += ["", END]
    return "\n".join(lines)


def check_docs(path: Path) -> str:
    """The docs file's text, after checking its markers and that it can be replaced."""
    from fwi_attn.io.files import check_output

    check_output(path, what="--docs")
    text = path.read_text() if path.exists() else ""
    begin, end = text.count(BEGIN), text.count(END)
    if (begin, end) not in ((0, 0), (1, 1)) or (begin and text.index(BEGIN) > text.index(END)):
        raise CheckError(f"--docs {path}: the markers {BEGIN} and {END} must appear once each, in that order "
                         f"(found {begin} and {end}); fix the file by hand")
    return text


def replace_section(path: Path, text: str, body: str) -> None:
    """Write ``body`` between the markers of ``text`` (or append it under its heading) atomically."""
    from fwi_attn.io.files import atomic_path

    if BEGIN in text:
        new = text[:text.index(BEGIN)] + body + text[text.index(END) + len(END):]
    else:
        new = text.rstrip("\n") + f"\n\n{HEADING}\n\n{body}\n"
    with atomic_path(path) as tmp:
        tmp.write_text(new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="every stage at the tests' tiny size on the CPU")
    parser.add_argument("--docs", type=Path, default=None,
                        help=f"markdown file whose GPU section is replaced (default: {DOCS.relative_to(REPO)}; "
                             "--tiny: none, the section is printed)")
    parser.add_argument("--tests", nargs="+", default=[str(REPO / "tests")], help="where pytest -m cuda looks")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for the whole check (default 480)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="run only these stages (default: all)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the stages' files in this folder")
    args = parser.parse_args(argv)

    import torch

    if not args.tiny and not torch.cuda.is_available():
        print("gpu-check: found no CUDA GPU (torch.cuda.is_available() is False); nothing checked, "
              "docs unchanged. `--tiny` runs the same stages on the CPU at tiny size.")
        return 0
    docs = args.docs if args.docs is not None else (None if args.tiny else DOCS)
    try:
        text = check_docs(docs) if docs is not None else ""
    except (CheckError, OSError, ValueError) as e:
        print(f"gpu-check: {e}", file=sys.stderr)
        return 2
    keep = tempfile.TemporaryDirectory(prefix="gpu_check_") if args.keep is None else None
    work = Path(keep.name) if keep else args.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # jobs find fwi-attn
    t0 = time.perf_counter()
    stages = [s for s in plan(args, work) if s.key in args.stages]
    for stage in stages:
        left = args.budget - (time.perf_counter() - t0)
        if left < 5:
            break
        print(f"gpu-check: {stage.title} (limit {min(stage.cap_s, left):.0f} s) ...", flush=True)
        run_stage(stage, min(stage.cap_s, left), env, REPO)
        print(f"gpu-check: {stage.title}: {'ok' if stage.ok else 'FAILED'} in {stage.seconds:.0f} s", flush=True)
        if not stage.ok:
            print(fence(stage.output + stage.errors, 30))
    body = section(stages, args, time.perf_counter() - t0, work)
    if docs is None:
        print(body)
    else:
        replace_section(docs, text, body)
        print(f"gpu-check: wrote the GPU section of {docs}")
    if keep:
        keep.cleanup()
    return 0 if all(s.ok for s in stages) else 1


if __name__ == "__main__":
    sys.exit(main())
