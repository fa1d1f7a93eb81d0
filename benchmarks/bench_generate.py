"""Dataset generation speed: ``fwi-attn generate`` end to end against bare deepwave calls.

Both paths simulate the same velocity models with the same survey in the same run; the bare
path calls ``deepwave.scalar`` directly on pre-built tensors and keeps the result in memory,
ours draws the models, checks them, simulates, transposes and writes an HDF5 shard. The ratio
(ours / bare samples per second) is our overhead; the target is >= 0.95.

    python benchmarks/bench_generate.py [--preset openfwi] [--samples 64] [--repeats 3]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import deepwave
import torch
from _common import cpu_name, peak_memory_bandwidth  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from fwi_attn.config import load_config, resolve_device
from fwi_attn.data.geology import generate_velocity
from fwi_attn.data.simulate import cells, generate_shard, shard_rng
from fwi_attn.data.survey import Survey


def bare_deepwave(velocity: torch.Tensor, survey: Survey, models_per_call: int) -> float:
    """Seconds to simulate ``velocity`` [n, nz, nx] with direct deepwave.scalar calls."""
    s = survey.n_shots
    dev = velocity.device
    src_cells = cells(survey.source_xz, survey.dx).to(dev)
    rec_cells = cells(survey.receiver_xz, survey.dx).to(dev)
    wavelet = survey.wavelet().to(dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(velocity), models_per_call):
            v = velocity[i:i + models_per_call]
            m = len(v)
            out = deepwave.scalar(
                v.repeat_interleave(s, 0), survey.dx, survey.dt,
                source_amplitudes=wavelet.repeat(m * s, 1, 1),
                source_locations=src_cells[:, None, :].repeat(m, 1, 1),
                receiver_locations=rec_cells[None].repeat(m * s, 1, 1),
                accuracy=survey.accuracy, pml_width=survey.pml_width, pml_freq=survey.freq,
                max_vel=survey.max_vel,
            )
            out.receiver_amplitudes.cpu()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="openfwi", help="preset name or config file")
    parser.add_argument("--dataset", default=None, help="dataset of the preset (default: study.dataset)")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    raw = load_config(args.preset).to_dict()
    name = args.dataset or raw["study"]["dataset"]
    raw["datasets"][name]["samples"]["train"] = args.samples
    raw["datasets"][name]["shard_size"] = args.samples
    raw["study"]["device"] = args.device
    cfg = load_config(raw)
    ds = cfg.datasets[name]
    survey = Survey.from_config(cfg)
    dev = resolve_device(args.device)
    velocity = generate_velocity(ds.family, args.samples, shard_rng(ds.seed, "train", 0),
                                 survey.nz, survey.nx, survey.dx, cfg.geology.to_dict())
    v = torch.from_numpy(velocity).to(dev)
    per_call = cfg.survey.models_per_call

    bare_deepwave(v[:per_call], survey, per_call)  # warm-up (thread pools, CUDA context)
    ours_s, bare_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            bare_s.append(bare_deepwave(v, survey, per_call))
            start = time.perf_counter()
            generate_shard(cfg, name, "train", 0, Path(tmp) / f"s{k}.h5", device=args.device)
            ours_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        cfg_file = Path(tmp) / "cfg.yaml"
        import yaml

        cfg_file.write_text(yaml.safe_dump(cfg.to_dict()))
        subprocess.run([sys.executable, "-m", "fwi_attn", "generate", "-c", str(cfg_file), "--dataset", name,
                        "--split", "train", "--shard", "0", "--out", str(Path(tmp) / "cli.h5"), "--quiet",
                        "--device", args.device], check=True, capture_output=True)
        cli_s = time.perf_counter() - start

    bare, ours = min(bare_s), min(ours_s)
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu_name()}, {args.threads} threads"
    print(f"## bench_generate: preset {args.preset}, dataset {name} ({ds.family}), {args.samples} samples")
    print(f"device: {device_name}; torch {torch.__version__}, deepwave {deepwave.__version__}")
    print(f"grid {survey.nz}x{survey.nx}, {survey.n_shots} shots, {survey.n_receivers} receivers, "
          f"nt {survey.nt}, accuracy {survey.accuracy}, {per_call} models per call; best of {args.repeats}\n")
    print("| path | seconds | samples/s |")
    print("|---|---|---|")
    print(f"| bare deepwave.scalar | {bare:.2f} | {args.samples / bare:.1f} |")
    print(f"| generate_shard (models + simulation + HDF5) | {ours:.2f} | {args.samples / ours:.1f} |")
    print(f"| `fwi-attn generate` CLI, incl. interpreter start | {cli_s:.2f} | {args.samples / cli_s:.1f} |")
    print(f"\nratio ours/bare samples/s: {bare / ours:.3f} (target >= 0.95)")
    if dev.type == "cuda":
        # Each inner step reads and writes ~4 wavefield arrays of float32 per cell (stencil memory traffic).
        steps = survey.nt * survey.inner_steps()
        cells_total = (survey.nz + 2 * survey.pml_width) * (survey.nx + 2 * survey.pml_width)
        bytes_moved = args.samples * survey.n_shots * steps * cells_total * 4 * 4
        effective = bytes_moved / ours
        peak = peak_memory_bandwidth(dev)
        limit = (f" = {effective / peak:.1%} of the stencil's memory-bandwidth limit (the device's peak "
                 f"{peak / 1e9:,.0f} GB/s)") if peak else ""
        print(f"effective stencil bandwidth: {effective / 1e9:.0f} GB/s{limit}")


if __name__ == "__main__":
    main()
