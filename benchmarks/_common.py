"""Helpers shared by the benchmark scripts (run as `python benchmarks/<name>.py`)."""
from __future__ import annotations

import platform
import subprocess


def cpu_name() -> str:
    """The CPU's model name as `lscpu` reports it, for the benchmark's machine line."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"
