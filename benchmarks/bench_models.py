"""Per-variant size, cost and training-step speed, relative to the plain UNet (``none``).

For each input shape and every registered variant: parameters, MACs per sample, the median
time of one forward + backward pass per sample, and its ratio to ``none`` measured in the same
run. Variants are timed round-robin (one step of each per round); the ratio is the median over
rounds of the per-round ratios, so load from other jobs on a shared machine, which drifts
between rounds, largely cancels. On CUDA the
table also has a bf16-autocast + channels_last column (``--bf16-cl`` adds it on CPU).

    python benchmarks/bench_models.py                  # CPU, salt and OpenFWI shapes
    python benchmarks/bench_models.py --device cuda    # adds the bf16 + channels_last column
    python benchmarks/bench_models.py --threads 1 --shapes salt --batch 16 --attn-levels 3 --width-mult 0.5

Prints a markdown table per shape.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import torch
from _common import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from fwi_attn.nn.models import OPENFWI_SHAPE, count_macs, count_params, create_model, list_models

SHAPES = {
    # The default study: 5 shots x 320 steps x 64 receivers -> 64 x 64 cells (the older tables in
    # docs/benchmarks.md were measured with 600 steps, as their headers say).
    "salt": dict(in_shots=5, nt=320, n_receivers=64, nz=64, nx=64),
    "openfwi": dict(OPENFWI_SHAPE),
}


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _step(model, x, device, bf16: bool) -> float:
    """Seconds for one forward + backward pass.

    A model whose attention follows its salt heads (m2f) trains with the salt loss, so its step
    includes the heads' logits on the velocity grid and a binary cross-entropy on them, as in
    training (:class:`fwi_attn.learn.train.SaltAuxLoss`).
    """
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    salt = getattr(model, "needs_salt_supervision", False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with autocast:
        out = model(x, salt=True) if salt else model(x)
    if salt:
        pred, logits = out
        truth = (pred.detach().float() > 0).float()
        loss = pred.float().square().mean() + 0.1 * torch.stack(
            [torch.nn.functional.binary_cross_entropy_with_logits(z.float(), truth) for z in logits]).mean()
    else:
        loss = out.float().square().mean()
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def time_variants(models: dict, x, device, bf16: bool, args) -> dict[str, list[float]]:
    """Seconds per forward + backward step, one list per model, timed round-robin."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(args.warmup + args.repeats):
        for name, model in models.items():
            t = _step(model, x, device, bf16)
            if i >= args.warmup:
                times[name].append(t)
    return times


def bench_shape(label: str, shape: dict, args, device) -> str:
    hyper = dict(width=args.width, depth=args.depth)
    if args.attn_levels is not None:
        hyper["attn_levels"] = args.attn_levels
    if args.width_mult is not None:
        hyper["width_mult"] = args.width_mult
    if args.attn_points:
        hyper["attn_points"] = tuple(args.attn_points)
    if args.mix_pool is not None:
        hyper["mix_pool"] = args.mix_pool
    names = [n for n in list_models() if n in args.variants] if args.variants else list_models()
    if "none" not in names:
        names.insert(0, "none")
    torch.manual_seed(0)
    models = {n: create_model(n, **shape, **hyper).to(device).train() for n in names}
    sample = (1, shape["in_shots"], shape["nt"], shape["n_receivers"])
    x = torch.randn(args.batch, *sample[1:], device=device)
    rows = {n: (count_params(m), count_macs(m, sample)) for n, m in models.items()}

    fp32 = time_variants(models, x, device, False, args)
    columns = [("fp32", fp32)]
    if device.type == "cuda" or args.bf16_cl:
        for m in models.values():
            m.to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        columns.append(("bf16+CL", time_variants(models, x_cl, device, True, args)))

    head = "| variant | parameters | MACs/sample |"
    rule = "|---|---:|---:|"
    for tag, _ in columns:
        head += f" {tag} ms/sample | {tag} x none |"
        rule += "---:|---:|"
    lines = [
        f"### {label}: {shape['in_shots']} shots x {shape['nt']} steps x {shape['n_receivers']} receivers"
        f" -> {shape['nz']} x {shape['nx']}, batch {args.batch}, width {args.width}, depth {args.depth},"
        f" attention points {hyper.get('attn_points', 'default')}, attention levels"
        f" {hyper.get('attn_levels', 'all')}"
        + (f" (InversionNet at {args.width_mult}x OpenFWI's widths)" if args.width_mult is not None
           else " (InversionNet at OpenFWI's widths)"),
        "",
        head,
        rule,
    ]
    for n in names:
        params, macs = rows[n]
        line = f"| {n} | {params:,} | {macs / 1e6:,.0f} M |"
        for _, t in columns:
            # Each round times every variant back to back, so a round's ratio sees one load level
            # of a shared machine; the median over rounds resists load that drifts between them.
            ratio = statistics.median(a / b for a, b in zip(t[n], t["none"]))
            line += f" {1e3 * statistics.median(t[n]) / args.batch:.2f} | {ratio:.2f} |"
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--variants", nargs="*", default=None, help="default: all registered")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--attn-points", nargs="+", choices=["encoder", "bottleneck", "decoder"], default=None,
                        help="override the variants' attention points (default: the registry's)")
    parser.add_argument("--attn-levels", type=int, default=None,
                        help="model.attn_levels: attention at the n coarsest levels (default: every level)")
    parser.add_argument("--width-mult", type=float, default=None,
                        help="model.width_mult: InversionNet's widths relative to OpenFWI's (default 1)")
    parser.add_argument("--mix-pool", type=int, default=None,
                        help="model.mix_pool: mixformer's common pooled key/value grid (default 8)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--bf16-cl", action="store_true",
                        help="also time bf16 autocast + channels_last off CUDA (always on with CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"Machine: {where}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads;"
          f" median of {args.repeats} rounds after {args.warmup} warm-up, forward + backward,"
          f" train mode; load average {_load()}.\n")
    for label in args.shapes:
        print(bench_shape(label, SHAPES[label], args, device))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
