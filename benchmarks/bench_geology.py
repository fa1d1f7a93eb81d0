"""Velocity-model generation speed per family: milliseconds per model on two grids.

Every family is timed in the same run, with the same geology, on each grid (by default the
default preset's 64 x 64 and the paper preset's 201 x 301), so the ratios to ``salt_blobs``
(the simpler salt family) are comparable. The target for ``salt`` at 64 x 64 is a few ms per
model.

    python benchmarks/bench_geology.py [--preset default] [--grids 64x64 201x301] [--n 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from _common import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from fwi_attn.config import load_config
from fwi_attn.data.geology import FAMILIES, generate_velocity


def grid(text: str) -> tuple[int, int]:
    """``NZxNX`` -> (nz, nx)."""
    try:
        nz, nx = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid {text!r} is not NZxNX, e.g. 64x64") from None
    return nz, nx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="geology and dx come from this preset")
    parser.add_argument("--grids", type=grid, nargs="+", default=[(64, 64), (201, 301)], help="NZxNX grids")
    parser.add_argument("--n", type=int, default=1000,
                        help="models per call at 64 x 64; larger grids get as many cells (at least 8 models)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = load_config(args.preset)
    dx, g = cfg.survey.dx, cfg.geology

    print(f"## bench_geology: geology of preset {args.preset}, dx {dx:g} m, best of {args.repeats}")
    print(f"CPU: {cpu_name()}; numpy {np.__version__}, one process\n")
    print("| grid | models per call | family | ms per model | ratio to salt_blobs |")
    print("|---|---|---|---|---|")
    for nz, nx in args.grids:
        n = max(8, round(args.n * 64 * 64 / (nz * nx)))
        seconds = {}
        for family in FAMILIES:
            generate_velocity(family, 4, np.random.default_rng(0), nz, nx, dx, g)  # warm-up
            runs = []
            for k in range(args.repeats):
                start = time.perf_counter()
                generate_velocity(family, n, np.random.default_rng(k), nz, nx, dx, g)
                runs.append(time.perf_counter() - start)
            seconds[family] = min(runs)
        for family, sec in seconds.items():
            print(f"| {nz} x {nx} | {n} | {family} | {sec / n * 1e3:.3f} | {sec / seconds['salt_blobs']:.2f} |")


if __name__ == "__main__":
    main()
