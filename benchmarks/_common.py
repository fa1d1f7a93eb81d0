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


def peak_memory_bandwidth(device) -> float | None:
    """A CUDA device's peak memory bandwidth in bytes/s from its memory clock and bus width
    (double data rate); None on other devices or where torch does not report them."""
    import torch

    if getattr(device, "type", device) != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    return 2.0 * clock_khz * 1e3 * bus_bits / 8 if clock_khz and bus_bits else None
