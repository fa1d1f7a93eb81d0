"""What a SLURM job costs over its command, from a finished run of the workflow on a cluster
(docs/benchmarks.md, "SLURM"). Run it in the run's working directory, while slurmctld still
remembers the jobs (MinJobAge)::

    python tests/slurm/overhead.py /path/to/workdir

For every SLURM job the run submitted (one workflow job, or a group of them) it reads, from the
run's Snakemake log, the benchmark files and the time Snakemake saw it finish; from ``scontrol
show job`` its submit, start and end times; from the benchmark files the commands' own seconds. Overhead = (seen finished - started)
- command seconds: the job's Snakemake start-up and srun inside the job, plus the delay until
the status check sees it. Time spent queued behind other jobs (a full node) is shown apart.
Times are whole seconds (Snakemake's log and scontrol), so each figure is good to about 1 s.
"""
from __future__ import annotations

import csv
import re
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def _stamp(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def pop_group(listed: list[list[str]], jobs: dict[str, dict], line: str) -> list[str]:
    """The listed group job a submission line names: its SLURM log folder is
    ``group_<group>_<its rules, sorted, joined by _>``; the first listed one if none matches."""
    for i, members in enumerate(listed):
        if f"_{'_'.join(sorted({jobs[j]['rule'] for j in members}))}/" in line:
            return listed.pop(i)
    return listed.pop(0) if listed else []


def parse_log(log: Path) -> dict[str, dict]:
    """{snakemake jobid: {"rule", "benchmark", "slurm", "finished"}} of the submitted jobs; the
    jobs of a group job (several in one SLURM job) share its SLURM jobid and finish time."""
    jobs: dict[str, dict] = {}
    groups: dict[str, list[str]] = {}  # a group job's id (in the log) -> its jobs' ids
    listed: list[list[str]] = []       # group jobs listed, not yet submitted (submitted in that order)
    now = current = None
    for line in log.read_text().splitlines():
        m = STAMP.match(line.strip())
        if m:
            now = _stamp(m.group(1))
            continue
        if re.search(r"(^|\] )Group job \w+", line):
            listed.append([])
        elif m := re.match(r"^(\s*)(local)?rule (\w+):", line):
            # A group's jobs are listed indented under it.
            current = {"rule": m.group(3), "local": bool(m.group(2)), "member": bool(m.group(1)) and bool(listed)}
        elif current is not None and (m := re.match(r"^\s+jobid: (\d+)", line)):
            jobs[m.group(1)] = current
            if current["member"]:
                listed[-1].append(m.group(1))
        elif current is not None and (m := re.match(r"^\s+benchmark: (\S+)", line)):
            current["benchmark"] = m.group(1)
        elif m := re.match(r"^Job (\S+) has been submitted with SLURM jobid (\d+)", line):
            members = [m.group(1)] if m.group(1) in jobs else pop_group(listed, jobs, line)
            groups[m.group(1)] = members
            for jid in members:
                jobs[jid]["slurm"] = m.group(2)
                jobs[jid]["group_size"] = len(members)
        elif m := re.match(r"^Finished jobid: (\S+)", line):
            for jid in groups.get(m.group(1), [m.group(1)]):
                if jid in jobs:
                    jobs[jid]["finished"] = now
    return {k: j for k, j in jobs.items() if "slurm" in j and "finished" in j}


def slurm_times(jobid: str, env: dict | None = None) -> dict[str, datetime]:
    out = subprocess.run(["scontrol", "show", "job", "-o", jobid], capture_output=True, text=True,
                         check=True, env=env).stdout
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    return {k: datetime.fromisoformat(fields[f"{k.capitalize()}Time"]) for k in ("submit", "start", "end")}


def command_seconds(benchmark: str) -> float:
    with open(benchmark) as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["s"])


def overheads(workdir: str | Path, env: dict | None = None) -> tuple[Path, list[tuple]]:
    """Per SLURM job of the latest run in ``workdir``: (rules, SLURM jobid, workflow jobs, queued s,
    command s, in-job start/stop s, seen after end s). A group job's command seconds are its jobs'
    sum: its start-up is paid once for all of them."""
    log = max((Path(workdir) / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    by_slurm: dict[str, list[dict]] = {}
    for job in parse_log(log).values():
        by_slurm.setdefault(job["slurm"], []).append(job)
    rows = []
    for jid, members in by_slurm.items():
        t = slurm_times(jid, env)
        s = sum(command_seconds(Path(workdir) / j["benchmark"]) for j in members if j.get("benchmark"))
        finished = max(j["finished"] for j in members)
        rules = "+".join(sorted({j["rule"] for j in members}))
        rows.append((rules, jid, len(members), (t["start"] - t["submit"]).total_seconds(), s,
                     (t["end"] - t["start"]).total_seconds() - s, (finished - t["end"]).total_seconds()))
    return log, sorted(rows, key=lambda r: int(r[1]))


def summary(rows: list[tuple]) -> str:
    """The overhead per SLURM job and per workflow job (a group's shared among its jobs)."""
    per_slurm = [r[5] + r[6] for r in rows]
    n_jobs = sum(r[2] for r in rows)
    return (f"{len(rows)} SLURM jobs for {n_jobs} workflow jobs; overhead over the commands: per SLURM job median "
            f"{statistics.median(per_slurm):.1f} s, max {max(per_slurm):.1f} s; per workflow job "
            f"{sum(per_slurm) / n_jobs:.1f} s (mean)")


def main(workdir: str) -> int:
    log, rows = overheads(workdir)
    print(f"log: {log}")
    print("| rules | SLURM job | jobs | queued s | command s | in-job start/stop s | seen after end s | overhead s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rules, jid, n, queued, s, injob, lag in rows:
        print(f"| {rules} | {jid} | {n} | {queued:.0f} | {s:.1f} | {injob:.1f} | {lag:.0f} | {injob + lag:.1f} |")
    print("\n" + summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
