"""Velocity-model generation speed per family: milliseconds per model at a preset's grid.

All families are timed in the same run on the same grid and geology, so the ratios to
``salt_blobs`` (the simpler salt family) are comparable. The target for ``salt`` at the
default preset (64 x 64) is a few ms per model.

    python benchmarks/bench_geology.py [--preset default] [--n 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fwi_attn.config import load_config
from fwi_attn.data.geology import FAMILIES, generate_velocity

from _common import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--n", type=int, default=1000, help="models per call")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.preset)
    s, g = cfg.survey, cfg.geology

    seconds = {}
    for family in FAMILIES:
        generate_velocity(family, 4, np.random.default_rng(0), s.nz, s.nx, s.dx, g)  # warm-up
        runs = []
        for k in range(args.repeats):
            start = time.perf_counter()
            generate_velocity(family, args.n, np.random.default_rng(k), s.nz, s.nx, s.dx, g)
            runs.append(time.perf_counter() - start)
        seconds[family] = min(runs)

    print(f"## bench_geology: preset {args.preset}, {s.nz} x {s.nx} cells, {args.n} models per call, "
          f"best of {args.repeats}")
    print(f"CPU: {cpu_name()}; numpy {np.__version__}, one process\n")
    print("| family | ms per model | ratio to salt_blobs |")
    print("|---|---|---|")
    for family, sec in seconds.items():
        print(f"| {family} | {sec / args.n * 1e3:.3f} | {sec / seconds['salt_blobs']:.2f} |")


if __name__ == "__main__":
    main()
