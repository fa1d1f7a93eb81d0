"""Training-loop speed: ``fwi_attn.learn.train.train_one_epoch`` against a plain PyTorch loop.

Both loops train the same model (same initial weights) on the same data in the same run,
their epochs interleaved so that drift in the machine's load hits both alike:

* **ours**: :func:`fwi_attn.learn.train.train_one_epoch` exactly as ``fwi-attn train`` sets it up:
  :func:`~fwi_attn.learn.train.make_loader` (seeded shuffling), fused AdamW, OneCycle schedule
  stepped per batch, gradient clipping, ``channels_last``, bf16 autocast where the device
  has native bf16 (:func:`fwi_attn.learn.train.bf16_supported`), tqdm progress bar (to stderr);
* **plain**: ``DataLoader(shuffle=True)`` + ``torch.optim.AdamW`` (defaults) + L1 loss, no
  scheduler, clipping, autocast or memory-format change;
* **ours in fp32**, with and without ``channels_last``: where the difference comes from.

Data: the default preset's survey (5 shots x 320 steps x 64 receivers -> 64 x 64) with
``--samples`` models, generated into a temporary folder; model: the preset's width 16,
depth 3; batch 16; 1 thread (as the study runs each job). On CUDA the table also gives the
``torch.compile`` gain.

    python benchmarks/bench_train.py [--samples 64] [--rounds 4] [--variants none mask] 2>/dev/null

Prints a markdown table; target: ours / plain >= 1.0 on CPU.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import bench_config, cpu_name  # noqa: E402

from fwi_attn.data.dataset import ShardDataset, compute_stats
from fwi_attn.data.normalize import Normalizer
from fwi_attn.data.simulate import generate_shard  # noqa: E402
from fwi_attn.learn.train import bf16_supported, make_loader, make_loss, make_optimizer, make_scheduler, train_one_epoch  # noqa: E402
from fwi_attn.nn.models import count_params, create_model  # noqa: E402


class Ours:
    """Our epoch function with the settings ``fwi-attn train`` uses."""

    def __init__(self, model, ds, cfg, device, *, channels_last=True, bf16=False, compile=False, epochs=100):
        self.device, self.channels_last, self.bf16 = device, channels_last, bf16
        self.model = model.to(device)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if compile else self.model
        self.generator = torch.Generator()
        self.loader = make_loader(ds, cfg.train.batch_size, shuffle=True, device=device, generator=self.generator)
        self.opt = make_optimizer(self.model, cfg.train.lr, cfg.train.weight_decay)
        self.sched = make_scheduler("onecycle", self.opt, cfg.train.lr, epochs * len(self.loader))
        self.loss = make_loss("l1")
        self.grad_clip = cfg.train.grad_clip
        self.epoch = 0

    def run_epoch(self) -> int:
        self.generator.manual_seed(self.epoch)
        self.epoch += 1
        out = train_one_epoch(self.step_model, self.loader, self.opt, self.sched, self.loss, device=self.device,
                              bf16=self.bf16, channels_last=self.channels_last, grad_clip=self.grad_clip,
                              progress=True, desc="ours")
        return out["samples"]


class Plain:
    """The textbook loop: DataLoader + AdamW + L1, nothing else."""

    def __init__(self, model, ds, cfg, device):
        self.device = device
        self.model = model.to(device)
        self.loader = torch.utils.data.DataLoader(ds, batch_size=cfg.train.batch_size, shuffle=True)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)

    def run_epoch(self) -> int:
        self.model.train()
        n = 0
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device)
            loss = torch.nn.functional.l1_loss(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            n += len(x)
        return n


def timed(loop) -> float:
    """Samples/s of one epoch."""
    if loop.device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    n = loop.run_epoch()
    if loop.device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def compare(loops: dict, rounds: int) -> dict[str, float]:
    """Median samples/s per loop; epochs interleaved round-robin, the first round a warm-up."""
    rates = {name: [] for name in loops}
    for r in range(rounds + 1):
        for name, loop in loops.items():
            s = timed(loop)
            if r:
                rates[name].append(s)
    return {name: statistics.median(v) for name, v in rates.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64, help="training samples (one epoch = samples / 16 steps)")
    parser.add_argument("--rounds", type=int, default=4, help="timed epochs per loop (median)")
    parser.add_argument("--variants", nargs="+", default=["none"], help="network variants (default: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--config", default=None, help="config file whose survey and model to use "
                        "(default: the default preset)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        root = Path(tmp)
        cfg = bench_config(root, args.samples, **({"config": args.config} if args.config else {}))
        t0 = time.perf_counter()
        generate_shard(cfg, "salt", "train", 0, root / "train" / "shard-0000.h5")
        gen_s = time.perf_counter() - t0
        norm = Normalizer.from_stats(compute_stats(root / "train", cfg.geology.vmin, cfg.geology.vmax, **cfg.normalize))
        ds = ShardDataset(root / "train", norm)
        shape = ds.model_shape()
        hyper = dict(width=cfg.model.width, depth=cfg.model.depth)

        print(f"Training-loop benchmark: {len(ds)} samples of {shape['in_shots']}x{shape['nt']}x"
              f"{shape['n_receivers']} -> {shape['nz']}x{shape['nx']} (generated in {gen_s:.0f} s), batch "
              f"{cfg.train.batch_size}, {args.threads} thread(s), {args.rounds} timed epochs per loop "
              f"(interleaved, median); {device.type.upper()}: "
              f"{torch.cuda.get_device_name() if device.type == 'cuda' else cpu_name()}; torch {torch.__version__}")
        print()
        rows = []
        for variant in args.variants:
            torch.manual_seed(0)
            base = create_model(variant, **shape, **hyper)
            state = {k: v.clone() for k, v in base.state_dict().items()}

            def fresh():
                m = create_model(variant, **shape, **hyper)
                m.load_state_dict(state)
                return m

            bf16 = bf16_supported(device)
            if device.type == "cpu":
                loops = {"plain PyTorch loop": Plain(fresh(), ds, cfg, device),
                         f"ours (fwi_attn.learn.train defaults: channels_last{', bf16' if bf16 else ''})":
                             Ours(fresh(), ds, cfg, device, bf16=bf16),
                         "ours, fp32, channels_last": Ours(fresh(), ds, cfg, device),
                         "ours, fp32, no channels_last": Ours(fresh(), ds, cfg, device, channels_last=False)}
                ref = "plain PyTorch loop"
            else:
                loops = {"plain PyTorch loop (fp32)": Plain(fresh(), ds, cfg, device),
                         "ours fp32, no channels_last": Ours(fresh(), ds, cfg, device, channels_last=False),
                         "ours + bf16": Ours(fresh(), ds, cfg, device, channels_last=False, bf16=True),
                         "ours + bf16 + channels_last (default)": Ours(fresh(), ds, cfg, device, bf16=True),
                         "ours + bf16 + channels_last + compile": Ours(fresh(), ds, cfg, device, bf16=True,
                                                                        compile=True)}
                ref = "plain PyTorch loop (fp32)"
            rates = compare(loops, args.rounds)
            for name, r in rates.items():
                rows.append((variant, count_params(base), name, r, r / rates[ref]))

    print("| variant | parameters | loop | samples/s | ratio to plain |")
    print("|---|---:|---|---:|---:|")
    for variant, n_params, name, r, ratio in rows:
        print(f"| {variant} | {n_params:,} | {name} | {r:,.1f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
