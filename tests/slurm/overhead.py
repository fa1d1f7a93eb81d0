"""What a SLURM job costs over its command, from a finished run of the workflow on a cluster
(docs/benchmarks.md, "SLURM"). Run it in the run's working directory, while slurmctld still
remembers the jobs (MinJobAge)::

    python tests/slurm/overhead.py /path/to/workdir

For every job the run submitted it reads, from the run's Snakemake log, the benchmark file and
the time Snakemake saw the job finish; from ``scontrol show job`` its submit, start and end
times; from the benchmark file the command's own seconds. Overhead = (seen finished - started)
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


def parse_log(log: Path) -> dict[str, dict]:
    """{snakemake jobid: {"rule", "benchmark", "slurm", "finished"}} of the submitted jobs."""
    jobs: dict[str, dict] = {}
    now = current = None
    for line in log.read_text().splitlines():
        m = STAMP.match(line)
        if m:
            now = _stamp(m.group(1))
            continue
        if m := re.match(r"^(local)?rule (\w+):", line):
            current = {"rule": m.group(2), "local": bool(m.group(1))}
        elif current is not None and (m := re.match(r"^\s+jobid: (\d+)", line)):
            jobs[m.group(1)] = current
        elif current is not None and (m := re.match(r"^\s+benchmark: (\S+)", line)):
            current["benchmark"] = m.group(1)
        elif m := re.match(r"^Job (\d+) has been submitted with SLURM jobid (\d+)", line):
            jobs[m.group(1)]["slurm"] = m.group(2)
        elif (m := re.match(r"^Finished jobid: (\d+)", line)) and m.group(1) in jobs:
            jobs[m.group(1)]["finished"] = now
    return {k: j for k, j in jobs.items() if "slurm" in j and "finished" in j}


def slurm_times(jobid: str) -> dict[str, datetime]:
    out = subprocess.run(["scontrol", "show", "job", "-o", jobid], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(kv.split("=", 1) for kv in out.split() if "=" in kv)
    return {k: datetime.fromisoformat(fields[f"{k.capitalize()}Time"]) for k in ("submit", "start", "end")}


def command_seconds(benchmark: str) -> float:
    with open(benchmark) as f:
        return float(next(csv.DictReader(f, delimiter="\t"))["s"])


def main(workdir: str) -> int:
    log = max((Path(workdir) / ".snakemake" / "log").glob("*.snakemake.log"), key=lambda p: p.stat().st_mtime)
    rows = []
    for job in parse_log(log).values():
        t = slurm_times(job["slurm"])
        s = command_seconds(job["benchmark"]) if job.get("benchmark") else 0.0
        rows.append((job["rule"], job["slurm"], (t["start"] - t["submit"]).total_seconds(), s,
                     (t["end"] - t["start"]).total_seconds() - s, (job["finished"] - t["end"]).total_seconds()))
    print(f"log: {log}")
    print("| rule | SLURM job | queued s | command s | in-job start/stop s | seen after end s | overhead s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rule, jid, queued, s, injob, lag in sorted(rows, key=lambda r: int(r[1])):
        print(f"| {rule} | {jid} | {queued:.0f} | {s:.1f} | {injob:.1f} | {lag:.0f} | {injob + lag:.1f} |")
    overhead = [r[4] + r[5] for r in rows]
    print(f"\n{len(rows)} SLURM jobs; overhead per job over its command: median {statistics.median(overhead):.1f} s, "
          f"max {max(overhead):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
