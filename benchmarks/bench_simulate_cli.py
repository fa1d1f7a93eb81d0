"""A user's stack of models: ``fwi-attn simulate stack.npy`` end to end against bare deepwave calls.

One ``.npy`` stack ``[n, nz, nx]`` is drawn on the preset's grid with the project's own generator
(seeded). The CLI path runs ``python -m fwi_attn simulate stack.npy --config PRESET --out x.h5``
as a subprocess, so interpreter start-up, imports, loading, checks, simulation and the HDF5 write
all count; the in-process path times :func:`fwi_attn.data.simulate.simulate` on the same models (our
simulation alone); the bare path calls ``deepwave.scalar`` directly on pre-built tensors with the
same models per call and keeps the result in memory. Every path uses ``study.threads`` torch
threads, as the CLI does. The paths alternate within each repeat; the best of each is reported.
The ratio CLI / bare seconds is the cost of one CLI call for a whole stack; the target is <= 2.

    python benchmarks/bench_simulate_cli.py [--preset default] [--models 48] [--repeats 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import deepwave
import numpy as np
import torch
from _common import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from bench_generate import bare_deepwave  # noqa: E402  (the same bare reference as the generate benchmark)

from fwi_attn.config import load_config, resolve_device
from fwi_attn.data.geology import generate_velocity
from fwi_attn.data.simulate import simulate
from fwi_attn.data.survey import Survey
from fwi_attn.io.shard import read_shard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--family", default=None, help="velocity family (default: the study dataset's)")
    parser.add_argument("--models", type=int, default=48, help="models in the stack")
    parser.add_argument("--seed", type=int, default=0, help="seed of the stack's generator")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (the CLI gets the same)")
    args = parser.parse_args()
    if args.models < 1 or args.repeats < 1:
        parser.error("--models and --repeats must be at least 1")

    cfg = load_config(args.preset)
    torch.set_num_threads(cfg.study.threads)  # what `fwi-attn simulate` does (set_threads)
    survey = Survey.from_config(cfg)
    family = args.family or cfg.datasets[cfg.study.dataset].family
    if survey.free_surface:
        raise SystemExit(f"{args.preset}: the bare reference (bench_generate.bare_deepwave) has no free surface")
    velocity = generate_velocity(family, args.models, np.random.default_rng(args.seed), survey.nz, survey.nx,
                                 survey.dx, cfg.geology.to_dict())
    dev = resolve_device(args.device)
    v = torch.from_numpy(velocity).to(dev)
    per_call = cfg.survey.models_per_call

    def cli(model: Path, out: Path) -> tuple[float, str]:
        """Seconds of one `fwi-attn simulate` subprocess, and its last line of output."""
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "fwi_attn", "simulate", str(model), "--config", args.preset,
                               "--out", str(out), "--device", args.device], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"fwi-attn simulate failed:\n{done.stderr}")
        return seconds, done.stdout.strip().splitlines()[-1]

    bare_deepwave(v[:1], survey, per_call)  # warm-up (thread pools, CUDA context)
    bare_s, ours_s, cli_s, one_s = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        stack, single = Path(tmp) / "stack.npy", Path(tmp) / "one.npy"
        np.save(stack, velocity)
        np.save(single, velocity[0])  # the way before: one call per model
        for k in range(args.repeats):
            bare_s.append(bare_deepwave(v, survey, per_call))

            start = time.perf_counter()
            simulate(velocity, survey, device=args.device, models_per_call=per_call)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            ours_s.append(time.perf_counter() - start)

            out = Path(tmp) / f"x{k}.h5"
            seconds, said = cli(stack, out)
            cli_s.append(seconds)
            one_s.append(cli(single, Path(tmp) / f"one{k}.h5")[0])
        # The CLI must have simulated the whole stack, not its first model.
        stored = read_shard(out, load=False).n
    if stored != args.models:
        raise SystemExit(f"the CLI wrote {stored} models, expected {args.models}")

    bare, ours, whole, one = min(bare_s), min(ours_s), min(cli_s), min(one_s)
    threads = cfg.study.threads
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu_name()}, {threads} thread(s)"
    print(f"## bench_simulate_cli: preset {args.preset}, {args.models} {family} models (seed {args.seed})")
    print(f"device: {device_name}; torch {torch.__version__}, deepwave {deepwave.__version__}")
    print(f"grid {survey.nz}x{survey.nx}, {survey.n_shots} shots, {survey.n_receivers} receivers, "
          f"nt {survey.nt}, accuracy {survey.accuracy}, {per_call} models per call; best of {args.repeats}")
    print(f"CLI said: {said}\n")
    print("| path | seconds | models/s |")
    print("|---|---:|---:|")
    print(f"| bare deepwave.scalar, in-process | {bare:.2f} | {args.models / bare:.1f} |")
    print(f"| fwi_attn.data.simulate.simulate, in-process | {ours:.2f} | {args.models / ours:.1f} |")
    print(f"| `fwi-attn simulate` CLI, whole stack, incl. interpreter start and HDF5 write | {whole:.2f} | "
          f"{args.models / whole:.1f} |")
    print(f"| `fwi-attn simulate` CLI, one model per call (before): 1 call x {args.models} | "
          f"{one:.2f} x {args.models} = {one * args.models:.1f} | {1 / one:.2f} |")
    print(f"\nratio CLI/bare seconds: {whole / bare:.3f} (target <= 2); simulate/bare: {ours / bare:.3f}; "
          f"CLI fixed cost (CLI - simulate): {whole - ours:.2f} s; one call per model would take "
          f"{one * args.models / whole:.1f}x the single call")


if __name__ == "__main__":
    main()
