"""Random-access loader speed: ours against OpenFWI's naive loader and against training.

Generates one shard of the default preset's survey (5 shots x 320 steps x 64 receivers ->
64 x 64 cells; ``--samples`` models, default 80 = the preset's shard size) into a temporary
folder, plus the same data as an OpenFWI-style ``data1.npy`` / ``model1.npy`` pair, then
times, over one random permutation of the sample indices:

* ``ShardDataset`` (ours) on the HDF5 shard and on the ``.npy`` pair: each file opened once,
  one chunk (or memory-mapped row) read per sample, OpenFWI's normalisation applied;
* naive loaders that re-read the whole file for every sample, as OpenFWI's ``FWIDataset``
  does without ``preload`` (``np.load(file)[i]``), and its HDF5 equivalent (``f["gathers"][()]``);
* the rate at which a training step consumes samples: forward + backward + AdamW of the
  ``none`` UNet at the default preset's size (width 16, depth 3, batch 16, 1 thread,
  channels_last and, on CPUs with native bf16, bf16 autocast, as ``fwi-attn train`` runs it).

The naive loaders' cost grows with the samples per file (OpenFWI's files hold 500 samples,
700 MB); ours does not. The loader must be at least 10x faster than training consumes.

    python benchmarks/bench_loader.py [--samples 80] [--repeats 3]

Prints a markdown table.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml
from _common import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from fwi_attn.config import PRESETS_DIR, load_config
from fwi_attn.data.dataset import ShardDataset, compute_stats
from fwi_attn.data.normalize import Normalizer
from fwi_attn.data.simulate import generate_shard
from fwi_attn.io.shard import read_shard


def bench_config(root: Path, train: int, val: int = 1, test: int = 1, shard_size: int | None = None,
                 config: str | Path = PRESETS_DIR / "default.yaml"):
    """The default preset (or the ``salt`` dataset of ``config``) with its survey and model, but
    few samples, data under ``root``."""
    raw = yaml.safe_load(Path(config).read_text())
    raw = copy.deepcopy(raw)
    raw["study"].update(data_dir=str(root / "data"), results_dir=str(root / "results"), device="cpu")
    ds = raw["datasets"]["salt"]
    ds["samples"] = {"train": train, "val": val, "test": test}
    ds["shard_size"] = shard_size or train
    return load_config(raw)


class NaiveNpy(torch.utils.data.Dataset):
    """OpenFWI's ``FWIDataset`` without preload: loads whole files for every sample."""

    def __init__(self, data: Path, model: Path, norm: Normalizer, n: int):
        self.data, self.model, self.norm, self.n = data, model, norm, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = np.load(self.data)[i]
        v = np.load(self.model)[i]
        return torch.from_numpy(self.norm.gathers(g)), torch.from_numpy(self.norm.velocity(v).astype(np.float32))


class NaiveH5(torch.utils.data.Dataset):
    """The HDF5 analogue: open the shard and read whole datasets for every sample."""

    def __init__(self, path: Path, norm: Normalizer, n: int):
        self.path, self.norm, self.n = path, norm, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        with h5py.File(self.path, "r") as f:
            g = f["gathers"][()][i]
            v = f["velocity"][()][i]
        return torch.from_numpy(self.norm.gathers(g)), torch.from_numpy(self.norm.velocity(v)[None].astype(np.float32))


def rate(dataset, order, repeats: int, limit: int | None = None) -> float:
    """Median samples/s of ``dataset[i]`` over ``order`` (first ``limit`` indices)."""
    order = order[:limit] if limit else order
    dataset[int(order[0])]  # open files, warm the page cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in order:
            dataset[int(i)]
        times.append(time.perf_counter() - t0)
    return len(order) / statistics.median(times)


def training_rate(shape: dict, batch: int, repeats: int, channels_last: bool = True) -> float:
    """Samples/s consumed by forward + backward + AdamW of the ``none`` UNet, with the
    settings ``fwi-attn train`` uses on this CPU (channels_last; bf16 autocast where native)."""
    from fwi_attn.learn.train import autocast, bf16_supported
    from fwi_attn.nn.models import create_model

    torch.manual_seed(0)
    model = create_model("none", **shape, width=16, depth=3)
    x = torch.randn(batch, shape["in_shots"], shape["nt"], shape["n_receivers"])
    y = torch.rand(batch, 1, shape["nz"], shape["nx"]) * 2 - 1
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with autocast(torch.device("cpu"), bf16_supported(torch.device("cpu"))):
            pred = model(x)
        loss = torch.nn.functional.l1_loss(pred.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=80, help="samples in the shard (default 80)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per loader (median)")
    parser.add_argument("--naive-samples", type=int, default=20,
                        help="random samples timed for the (slow) naive loaders")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        root = Path(tmp)
        cfg = bench_config(root, args.samples)
        t0 = time.perf_counter()
        shard = generate_shard(cfg, "salt", "train", 0, root / "h5" / "shard-0000.h5")
        gen_s = time.perf_counter() - t0
        s = read_shard(shard)
        (root / "npy").mkdir()
        np.save(root / "npy" / "data1.npy", s.gathers)
        np.save(root / "npy" / "model1.npy", s.velocity[:, None])
        norm = Normalizer.from_stats(compute_stats(root / "h5", cfg.geology.vmin, cfg.geology.vmax, **cfg.normalize))
        n = s.n
        order = np.random.default_rng(0).permutation(n)

        ours_h5 = ShardDataset(root / "h5", norm)
        ours_npy = ShardDataset(root / "npy", norm)
        naive_h5 = NaiveH5(shard, norm, n)
        naive_npy = NaiveNpy(root / "npy" / "data1.npy", root / "npy" / "model1.npy", norm, n)
        for a, b in ((ours_h5[3], naive_npy[3]), (ours_npy[3], naive_h5[3])):  # same samples, same values
            assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1].reshape(a[1].shape))

        rates = {
            "ours, HDF5 shard": rate(ours_h5, order, args.repeats),
            "ours, OpenFWI .npy pair": rate(ours_npy, order, args.repeats),
            "naive, HDF5 (whole dataset per sample)": rate(naive_h5, order, 1, args.naive_samples),
            "naive, .npy (np.load whole file per sample; OpenFWI)": rate(naive_npy, order, 1, args.naive_samples),
        }
        shape = ours_h5.model_shape()
        train_rate = training_rate(shape, batch=cfg.train.batch_size, repeats=5)
        file_mb = shard.stat().st_size / 2**20

    print(f"Loader benchmark: {n} samples of {shape['in_shots']}x{shape['nt']}x{shape['n_receivers']} -> "
          f"{shape['nz']}x{shape['nx']} in one {file_mb:.0f} MB file (generated in {gen_s:.0f} s); random access, "
          f"one process, {args.threads} torch thread; {cpu_name()}, torch {torch.__version__}")
    print()
    print("| loader | samples/s | ms/sample | x naive .npy | x training consumption |")
    print("|---|---:|---:|---:|---:|")
    naive = rates["naive, .npy (np.load whole file per sample; OpenFWI)"]
    for name, r in rates.items():
        print(f"| {name} | {r:,.0f} | {1000 / r:.2f} | {r / naive:.1f} | {r / train_rate:.1f} |")
    print(f"| training step, `none` UNet (w16 d3, batch {cfg.train.batch_size}, fwi-attn train settings) | "
          f"{train_rate:,.0f} | {1000 / train_rate:.2f} | | 1.0 |")
    ok = min(rates["ours, HDF5 shard"], rates["ours, OpenFWI .npy pair"]) >= 10 * train_rate
    print()
    print(f"Loader >= 10x training consumption: {'yes' if ok else 'NO'} "
          f"({min(rates['ours, HDF5 shard'], rates['ours, OpenFWI .npy pair']) / train_rate:.0f}x). "
          f"The naive loaders' cost grows linearly with samples per file (OpenFWI: 500 per file, "
          f"about {500 / n:.0f}x this file).")


if __name__ == "__main__":
    main()
