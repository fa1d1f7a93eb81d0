"""What TensorBoard event files cost a training job: ``train()`` with and without them, one process.

Each round trains every ``--variants`` run twice on the default study's data and settings
(``train.epochs`` epochs, width 8, batch 16, ``study.threads`` threads), once with
``train.tensorboard: --every`` (scalars every epoch, image panels every ``--every`` epochs and at
the last) and once with ``0`` (no event files), in alternating order so that drift in the
machine's load hits both alike; a warm-up run first (imports, caches) is not counted. The
overhead is the median difference of the paired runs plus what a job pays once for importing
``torch.utils.tensorboard`` (timed in a fresh interpreter), over the median run without event
files. Requirement: < 2% of a training job.

The paired difference is as noisy as the machine; the table also gives the time spent inside the
event-file code itself (:class:`fwi_attn.learn.tensorboard.RunBoard`: opening, each epoch's
scalars and images, closing), summed per run, which load changes far less: the direct cost, plus
the import, over the wall time of a whole ``fwi-attn train --no-tensorboard`` job (a fresh
interpreter, as the workflow runs it: imports, data, cost count, training, checkpoints; median of
``--rounds`` jobs) and, stricter, over the ``train()`` call alone.

    python benchmarks/bench_tensorboard.py [--config default] [--data-dir DIR] [--rounds 3] \
        [--variants none m2f] [--every 5]

The data must exist (``fwi-attn generate`` and ``fwi-attn stats``, or the workflow's data rules).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name  # noqa: E402

# What a training job has imported when it opens its event files (torch._dynamo: the cost count).
IMPORT_CODE = ("import time, torch, torch._dynamo, h5py, fwi_attn.config, fwi_attn.learn.train, fwi_attn.nn.models; "
               "t = time.perf_counter(); import torch.utils.tensorboard; print(time.perf_counter() - t)")


def import_seconds(repeats: int = 5) -> float:
    """Median time to import ``torch.utils.tensorboard`` in a fresh interpreter after what a training job
    has imported by then (the modules it shares with them are not counted twice)."""
    times = [float(subprocess.run([sys.executable, "-c", IMPORT_CODE], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(repeats)]
    return statistics.median(times)


def job_seconds(args, variant: str) -> float:
    """Median wall time of ``fwi-attn train --no-tensorboard`` jobs of ``variant`` (fresh interpreters)."""
    times = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            config = args.config
            if args.data_dir:
                import yaml

                from fwi_attn.config import load_config

                raw = load_config(args.config).to_dict()
                raw["study"]["data_dir"] = args.data_dir
                config = str(Path(tmp) / "config.yaml")
                Path(config).write_text(yaml.safe_dump(raw))
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fwi_attn", "train", "-c", config, "--variant", variant, "--seed",
                            "0", "--out", str(Path(tmp) / "run"), "--quiet", "--no-tensorboard"],
                           check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="default", help="study config (default: the default preset)")
    p.add_argument("--data-dir", default=None, help="study.data_dir holding the dataset (default: the config's)")
    p.add_argument("--rounds", type=int, default=3, help="paired runs per variant")
    p.add_argument("--variants", nargs="+", default=["none", "m2f"])
    p.add_argument("--every", type=int, default=5, help="train.tensorboard of the runs with event files")
    args = p.parse_args(argv)

    import torch

    from fwi_attn.config import load_config
    from fwi_attn.learn.train import train

    raw = load_config(args.config).to_dict()
    if args.data_dir:
        raw["study"]["data_dir"] = args.data_dir
    configs = {}
    for every in (args.every, 0):
        raw["train"]["tensorboard"] = every
        configs[every] = load_config(raw)
    cfg = configs[0]
    torch.set_num_threads(cfg.study.threads)
    stats = Path(cfg.study.data_dir) / cfg.study.dataset / "stats.json"
    if not stats.exists():
        print(f"bench_tensorboard: no dataset at {stats.parent}: generate it first (fwi-attn generate, fwi-attn "
              "stats) or pass --data-dir", file=sys.stderr)
        return 2

    def quiet(line):
        pass

    from fwi_attn.learn.tensorboard import RunBoard

    inside = [0.0]  # seconds spent in RunBoard's methods during the current run

    def timed(method):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return method(*a, **k)
            finally:
                inside[0] += time.perf_counter() - t
        return wrapper

    for name in ("__init__", "epoch", "close"):
        setattr(RunBoard, name, timed(getattr(RunBoard, name)))

    rows, direct = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        def run(variant: str, every: int, tag: str) -> float:
            inside[0] = 0.0
            t0 = time.perf_counter()
            train(configs[every], variant, 0, Path(tmp) / f"{variant}-{every}-{tag}", progress=False, log=quiet)
            seconds = time.perf_counter() - t0
            if every:
                direct.setdefault(variant, []).append(inside[0])
            return seconds

        run(args.variants[0], args.every, "warm-up")
        direct.clear()
        for variant in args.variants:
            on, off = [], []
            for r in range(args.rounds):
                order = (args.every, 0) if r % 2 == 0 else (0, args.every)
                for every in order:
                    (on if every else off).append(run(variant, every, str(r)))
            rows.append((variant, on, off))
    imp = import_seconds()
    jobs = {variant: job_seconds(args, variant) for variant in args.variants}
    print(f"Machine: {cpu_name()}; torch {torch.__version__}; {cfg.study.threads} thread(s); "
          f"config {args.config}, {cfg.train.epochs} epochs, images every {args.every} epochs and at the last; "
          f"{args.rounds} paired rounds; import of torch.utils.tensorboard in a job {imp * 1000:.0f} ms")
    print("| variant | train() without (s) | with (s) | paired difference (s) | event-file code (s) | "
          "+ import, of train() | job without (s) | + import, of the job |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    for variant, on, off in rows:
        diff = statistics.median(a - b for a, b in zip(on, off))
        inside = statistics.median(direct[variant])
        of_call = (inside + imp) / statistics.median(off)
        of_job = (inside + imp) / jobs[variant]
        worst = max(worst, of_job)
        print(f"| {variant} | {statistics.median(off):.2f} | {statistics.median(on):.2f} | {diff:+.3f} | "
              f"{inside:.3f} | {of_call * 100:.2f}% | {jobs[variant]:.2f} | {of_job * 100:.2f}% |")
    print(f"requirement < 2% of a training job (direct cost + import): {'met' if worst < 0.02 else 'NOT met'} "
          f"(worst {worst * 100:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
