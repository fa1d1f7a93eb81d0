"""Each job of a finished workflow run: what it asked for (mem_mb, runtime) beside what it used
(its ``benchmark:`` file: max_rss, s), for the paper-size rehearsal (``make rehearse``,
tests/test_rehearse.py, docs/benchmarks.md "Rehearsal")::

    python benchmarks/rehearse.py WORKDIR     # the folder Snakemake ran in

A request fails when it is below the measured peak (the scheduler would kill the job) or more
than ``SLACK`` times above it (the job would wait for memory or time it never uses). Run times at
the floor (``fwi_attn.resources.MIN_RUNTIME``, queueing and start-up) are checked only from
below: a rehearsal's jobs are short. Peaks are Snakemake's samples of the job's process tree
(every 0.5 s for 15 s, then every 30 s), so a longer job's brief peak may go unseen: memory over
``SLACK`` x is a failure only for jobs of at most ``DENSE_S`` seconds.
Exits 1 when a request fails, after printing the table and the sum of the jobs' seconds.
"""
from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

#: A request may be at most this many times the measured peak (memory) or time (run time).
SLACK = 3.0
#: Snakemake samples a job's memory every 0.5 s for its first 15 s, then every 30 s: a longer
#: job's short peak (an evaluation's forward pass) can fall between two samples. Its memory
#: request is then checked from below only (the table still shows the ratio).
DENSE_S = 15.0


@dataclass
class Job:
    rule: str
    benchmark: str
    mem_mb: float
    runtime_min: float
    max_rss_mb: float | None = None
    seconds: float | None = None

    def problems(self, min_runtime: float) -> list[str]:
        """Why this job's request does not fit its measurement (empty: it fits)."""
        out = []
        if self.max_rss_mb is not None:
            if self.mem_mb < self.max_rss_mb:
                out.append(f"mem_mb {self.mem_mb:.0f} below the measured peak {self.max_rss_mb:.0f} MB")
            elif self.mem_mb > SLACK * self.max_rss_mb and (self.seconds or 0) <= DENSE_S:
                out.append(f"mem_mb {self.mem_mb:.0f} over {SLACK:g}x the measured peak {self.max_rss_mb:.0f} MB")
        if self.seconds is not None:
            if 60 * self.runtime_min < self.seconds:
                out.append(f"runtime {self.runtime_min:.0f} min below the measured {self.seconds:.0f} s")
            elif self.runtime_min > min_runtime and 60 * self.runtime_min > SLACK * self.seconds:
                out.append(f"runtime {self.runtime_min:.0f} min over {SLACK:g}x the measured {self.seconds:.0f} s")
        return out


def requested(log: Path) -> list[Job]:
    """Every job of a Snakemake log that has a benchmark file, with the resources it asked for."""
    jobs, current = [], None
    for line in log.read_text().splitlines():
        if m := re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):", line):
            current = {"rule": m.group(1)}
        elif current is not None and (m := re.match(r"^\s+benchmark: (\S+)", line)):
            current["benchmark"] = m.group(1)
        elif current is not None and (m := re.match(r"^\s+resources: (.*)$", line)):
            res = dict(kv.split("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
            if "benchmark" in current and "mem_mb" in res and "runtime" in res:
                jobs.append(Job(current["rule"], current["benchmark"], float(res["mem_mb"]), float(res["runtime"])))
            current = None
    return jobs


def measure(job: Job, workdir: Path) -> Job:
    """Fill in the peak memory (MB) and seconds from the job's benchmark file, if written."""
    path = workdir / job.benchmark
    if path.is_file():
        with open(path) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        job.seconds = float(row["s"])
        job.max_rss_mb = float(row["max_rss"]) if row.get("max_rss") not in (None, "", "NA", "-") else None
    return job


def latest_log(workdir: Path) -> Path:
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise FileNotFoundError(f"{workdir}: no Snakemake log in .snakemake/log (run the workflow there first)")
    return logs[-1]


def jobs_of(workdir: Path, logs: list[Path] | None = None) -> list[Job]:
    """The measured jobs of the given logs (default: the latest), one per benchmark file."""
    seen: dict[str, Job] = {}
    for log in logs or [latest_log(workdir)]:
        for job in requested(log):
            seen[job.benchmark] = measure(job, workdir)
    return [j for j in seen.values() if j.seconds is not None]


def table(jobs: list[Job], min_runtime: float) -> str:
    rows = ["| rule | benchmark | mem_mb | max_rss MB | ratio | runtime min | s | check |",
            "|---|---|---:|---:|---:|---:|---:|---|"]
    for j in sorted(jobs, key=lambda j: (j.rule, j.benchmark)):
        ratio = f"{j.mem_mb / j.max_rss_mb:.1f}" if j.max_rss_mb else "-"
        rss = f"{j.max_rss_mb:.0f}" if j.max_rss_mb is not None else "-"
        rows.append(f"| {j.rule} | {Path(j.benchmark).name} | {j.mem_mb:.0f} | {rss} | {ratio} | {j.runtime_min:.0f} "
                    f"| {j.seconds:.1f} | {'; '.join(j.problems(min_runtime)) or 'ok'} |")
    return "\n".join(rows)


def main(workdir: str) -> int:
    from fwi_attn.resources import MIN_RUNTIME

    root = Path(workdir)
    logs = sorted((root / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    jobs = jobs_of(root, logs)
    print(table(jobs, MIN_RUNTIME))
    total = sum(j.seconds for j in jobs)
    print(f"\n{len(jobs)} jobs; their seconds sum to {total:.0f} s ({total / 2:.0f} s on two quiet cores)")
    return 1 if any(j.problems(MIN_RUNTIME) for j in jobs) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
