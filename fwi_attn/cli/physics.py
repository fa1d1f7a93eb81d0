"""Physics sub-commands of ``fwi-attn``: physics (re-simulate predictions), refine (FWI).

Each ``command_<name>(parser)`` adds the command's arguments and returns the function to run
(see :mod:`fwi_attn.cli`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from fwi_attn.cli import add_config_argument, set_threads
from fwi_attn.layout import RUN


def command_physics(parser: argparse.ArgumentParser):
    """``fwi-attn physics --config C --predictions P [P ...] [--out DIR] [--samples N]``:
    physics.json and gathers.h5 (and with --figure physics.png) beside each predictions file (or in DIR,
    for one)."""
    add_config_argument(parser)
    parser.add_argument("--predictions", required=True, nargs="+",
                        help=f"{RUN.predictions} file(s) written by `fwi-attn evaluate`; several are checked in one "
                        "process, which simulates their shared true and mean models once")
    parser.add_argument("--out", default=None, help="output folder for a single predictions file (default: the "
                        f"file's own folder): {RUN.physics} and {RUN.gathers} (the showcase sample's observed and "
                        "re-simulated gathers, which the comparison figures draw)")
    parser.add_argument("--samples", type=int, default=None, help="re-simulate the first N samples "
                        "(default: physics.samples of the config)")
    parser.add_argument("--device", default=None, help="override study.device (auto, cpu, cuda)")
    parser.add_argument("--figure", action="store_true", help=f"also draw {RUN.physics_figure} (the showcase sample's "
                        f"models, data and residual) beside each {RUN.physics}, as the workflow does")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.io.files import check_distinct, check_output
        from fwi_attn.layout import RUN
        from fwi_attn.physics.check import PhysicsError, run_physics

        cfg = load_config(args.config)
        if args.out is not None and len(args.predictions) > 1:
            raise PhysicsError(f"--out names one folder but {len(args.predictions)} predictions files were given; "
                               f"leave --out out to write each run's results beside its {RUN.predictions}")
        if args.samples is not None and args.samples < 1:
            raise PhysicsError(f"--samples must be at least 1, got {args.samples}")
        missing = [p for p in args.predictions if not Path(p).is_file()]
        if missing:  # before the first run's simulation, not after it
            raise PhysicsError(f"predictions file {missing[0]} does not exist (write it with `fwi-attn evaluate` "
                               f"or `fwi-attn predict`)" + (f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""))
        check_distinct(args.predictions, "--predictions")  # one run's samples would count twice
        outs = [Path(args.out) if args.out is not None else Path(p).parent for p in args.predictions]
        for out in dict.fromkeys(outs):  # every folder writable before the first simulation
            check_output(out, folder=True)
        set_threads(cfg)
        simulated: dict = {}
        for predictions, out in zip(args.predictions, outs):
            result = run_physics(cfg, predictions, out, samples=args.samples, device=args.device, simulated=simulated)
            if args.figure:
                from fwi_attn.results.physics_plots import plot_physics_run

                plot_physics_run(result.showcase, result.summary, out / RUN.physics_figure, cfg.geology.vmin,
                                 cfg.geology.vmax)
            m = result.summary["mean"]
            print(f"{predictions}: {result.summary['n_samples']} samples, {result.summary['seconds_per_sample']:.3f} s "
                  f"each: rel. L2 misfit {m['rel_l2']:.4f} (mean model {m['baseline_rel_l2']:.4f}, true model "
                  f"{m['true_rel_l2']:.1e}); trace correlation {m['trace_corr']:.4f} (mean model "
                  f"{m['baseline_trace_corr']:.4f}); on the reflections (direct wave muted, t^2 gain): rel. L2 "
                  f"{_fmt(m['rel_l2_reflection'])} (mean model {_fmt(m['baseline_rel_l2_reflection'])}), trace "
                  f"correlation {_fmt(m['trace_corr_reflection'])}; wrote {out / RUN.physics} and "
                  f"{out / RUN.gathers} "
                  f"(test sample {result.showcase.index})")

    return run


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def command_refine(parser: argparse.ArgumentParser):
    """``fwi-attn refine --config C (--predictions P [--sample I ...] | --data SHARD [--sample I]
    [--model FILE] [--model-start FILE]) [--start KIND] --out DIR``."""
    from fwi_attn.physics.fwi import STARTS, STORAGE

    add_config_argument(parser)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictions", help=f"{RUN.predictions} of a run: observed data from its test shards, "
                     "start from its prediction")
    src.add_argument("--data", help="an fwi-attn shard with the observed gathers (e.g. from `fwi-attn simulate`)")
    parser.add_argument("--sample", type=int, nargs="+", default=None,
                        help="with --predictions: rows of the file (default: the first physics.refine.samples); "
                             "with --data: sample index within the shard (default 0)")
    parser.add_argument("--model", default=None, help="with --data: the true model (.npy, .h5, SEG-Y; resampled "
                        "to the data's grid; a stack gives sample i model i) for errors and conventional starts; default: the shard's velocity")
    parser.add_argument("--model-start", default=None, help="with --data: starting model, a predictions .h5 from "
                        "`fwi-attn predict` or a .npy on the data's grid (implies --start prediction)")
    parser.add_argument("--start", choices=STARTS, default=None,
                        help="starting model (default: physics.refine.start, or 'prediction' with --model-start)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per stage (physics.refine.iterations)")
    parser.add_argument("--optimizer", choices=("adam", "lbfgs"), default=None)
    parser.add_argument("--lr", type=float, default=None, help="Adam step in m/s (physics.refine.lr)")
    parser.add_argument("--frequencies", type=float, nargs="*", default=None,
                        help="low-pass corners (Hz) of the multiscale stages (physics.refine.frequencies)")
    parser.add_argument("--sigma", type=float, default=None, help="smoothing sigma in m for 'smooth' and "
                        "'background' starts (physics.refine.smooth_sigma)")
    parser.add_argument("--storage", choices=STORAGE, default=None,
                        help="how a gradient keeps the wavefield history (physics.refine.storage)")
    parser.add_argument("--device", default=None, help="override study.device (auto, cpu, cuda)")
    parser.add_argument("--out", required=True, help=f"output folder: {RUN.refine}, {RUN.refined}, {RUN.refine_figure}")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.io.files import check_output
        from fwi_attn.physics.fwi import refine_samples

        cfg = load_config(args.config)
        check_output(args.out, folder=True)
        set_threads(cfg)
        _, runs = refine_samples(cfg, args.out, predictions=args.predictions, data=args.data, sample=args.sample,
                                 model=args.model, model_start=args.model_start, start=args.start,
                                 iterations=args.iterations, optimizer=args.optimizer, lr=args.lr,
                                 frequencies=args.frequencies, sigma=args.sigma, device=args.device,
                                 storage=args.storage)

        from fwi_attn.layout import RUN
        from fwi_attn.results.physics_plots import plot_refine

        png = Path(args.out) / RUN.refine_figure
        plot_refine(runs, png, runs[0]["dx"], cfg.geology.vmin, cfg.geology.vmax)
        print(f"wrote {png}")

    return run
