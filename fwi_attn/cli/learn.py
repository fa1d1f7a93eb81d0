"""Learning sub-commands of ``fwi-attn``: variants, train, evaluate, predict.

Each ``command_<name>(parser)`` adds the command's arguments and returns the function to run
(see :mod:`fwi_attn.cli`).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fwi_attn.cli import add_config_argument, set_threads
from fwi_attn.layout import RUN


def command_variants(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Add ``--config`` to ``parser``; return the command printing each variant's size and cost.

    The table lists every registered variant with its parameter count and the MACs of one
    forward pass for one sample, at the config's survey size (``survey.n_shots, nt,
    n_receivers, nz, nx``, hyper-parameters from its ``model`` section) or, without
    ``--config``, at OpenFWI's 5 x 1000 x 70 -> 70 x 70 with default hyper-parameters.
    """
    parser.add_argument(
        "--config", "-c", default=None,
        help="study config; default: OpenFWI's sizes (5 shots x 1000 steps x 70 receivers -> 70 x 70)",
    )

    def run(args: argparse.Namespace) -> int:
        import torch

        from fwi_attn.nn.models import (
            OPENFWI_SHAPE,
            count_macs,
            count_params,
            create_model,
            list_models,
            model_kwargs,
            section_dict,
        )

        if args.config is not None:
            from fwi_attn.config import load_config

            cfg = load_config(args.config)
            s = cfg.survey
            shape = dict(in_shots=s.n_shots, nt=s.nt, n_receivers=s.n_receivers, nz=s.nz, nx=s.nx)
            known = model_kwargs()
            # The model section may also hold non-architecture keys (the variant list, ...).
            hyper = {k: v for k, v in section_dict(getattr(cfg, "model", None)).items() if k in known - set(shape)}
            source = str(args.config)
        else:
            shape, hyper, source = dict(OPENFWI_SHAPE), {}, "OpenFWI default"
        sample = (1, shape["in_shots"], shape["nt"], shape["n_receivers"])
        print(
            f"Input {shape['in_shots']} shots x {shape['nt']} steps x {shape['n_receivers']} receivers"
            f" -> {shape['nz']} x {shape['nx']} ({source}); hyper-parameters {hyper or 'default'}; MACs per sample"
        )
        print("| variant | parameters | MACs |")
        print("|---|---:|---:|")
        for name in list_models():
            # Meta tensors: shapes only, so counting the 24M-parameter baseline costs nothing.
            with torch.device("meta"):
                model = create_model(name, **shape, **hyper)
            print(f"| {name} | {count_params(model):,} | {count_macs(model, sample) / 1e9:.3f} G |")
        return 0

    return run


def command_train(parser):
    add_config_argument(parser)
    parser.add_argument("--variant", required=True, help="network variant (see `fwi-attn variants`)")
    parser.add_argument("--seed", type=int, required=True, help="training seed")
    parser.add_argument("--out", required=True, help=f"output folder ({RUN.model}, {RUN.last}, {RUN.history}, {RUN.tensorboard}/)")
    parser.add_argument("--resume", nargs="?", const="strict", default=None, choices=["strict", "auto"],
                        help=f"continue from OUT/{RUN.last} when it exists; 'auto': only an unfinished one made "
                             "with the same settings, else start afresh (the workflow's choice)")
    parser.add_argument("--epochs", type=int, default=None, help="total epochs (default: train.epochs)")
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many epochs of this call (continue later with --resume)")
    parser.add_argument("--stats", default=None, help="stats.json (default: <data_dir>/<dataset>/stats.json)")
    parser.add_argument("--width", type=int, default=None,
                        help="the UNet's base width for this run instead of model.width (the parameter-matched "
                             "control none_wide; the workflow takes it from selection.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-tensorboard", action="store_true",
                        help=f"write no TensorBoard event files (OUT/{RUN.tensorboard}/) whatever train.tensorboard says")
    parser.epilog = (f"{parser.epilog or ''}. Several processes (GPUs): torchrun --nproc_per_node=N "
                     "-m fwi_attn train ... (train.batch_size is the global batch, split over the N processes)")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.io.files import check_output
        from fwi_attn.learn.train import train

        cfg = load_config(args.config)
        check_output(args.out, folder=True)
        set_threads(cfg)
        result = train(cfg, args.variant, args.seed, args.out, resume=args.resume, epochs=args.epochs,
                       stop_after=args.stop_after, stats_path=args.stats, width=args.width,
                       progress=not args.quiet, tensorboard=False if args.no_tensorboard else None)
        if result.rank:  # under torchrun rank 0 reports for all
            return 0
        state = "finished" if result.finished else f"stopped after epoch {result.epochs_done}/{result.epochs}"
        print(f"{state}: best val MAE {result.best_val_mae:.4f} at epoch {result.best_epoch}; "
              f"wrote {result.out / RUN.model}, {result.out / RUN.history}")

    return run


def command_evaluate(parser):
    add_config_argument(parser)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help=f"trained model (DIR/{RUN.model})")
    what.add_argument("--baseline", choices=["mean"], help="score a baseline instead: the train split's mean model")
    what.add_argument("--predictions", metavar="FILE",
                      help=f"score a `fwi-attn predict` output against the true models it holds ({RUN.metrics} only)")
    parser.add_argument("--out", required=True, help=f"output folder ({RUN.predictions}, {RUN.metrics} and, for a "
                        f"checkpoint, {RUN.attention})")
    parser.add_argument("--split", default="test", choices=["test", "val"], help="split to predict (default test)")
    parser.add_argument("--test-set", default=None, metavar="NAME=FOLDER",
                        help="score the test set NAME in FOLDER (made by `fwi-attn testset --name NAME`) instead "
                             "of --split; its metrics are labelled NAME/test")
    parser.add_argument("--stats", default=None, help="stats.json (default: <data_dir>/<dataset>/stats.json); with "
                        "--checkpoint it is checked against the normalisation the checkpoint records")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.io.files import check_output
        from fwi_attn.learn.evaluate import EvaluateError, evaluate_baseline, evaluate_checkpoint, evaluate_predictions

        test_set = None
        if args.test_set is not None:
            name, sep, folder = args.test_set.partition("=")
            if not (sep and name and folder):
                raise EvaluateError(f"--test-set takes NAME=FOLDER (e.g. bp=data/testsets/bp), got {args.test_set!r}")
            test_set = (name, folder)
            if args.split != "test":
                raise EvaluateError(f"--test-set scores the set's test split; it takes no --split {args.split}")
        cfg = load_config(args.config)
        check_output(args.out, folder=True)
        set_threads(cfg)
        if args.predictions:
            if test_set is not None:
                raise EvaluateError("--predictions holds its own true models; it takes no --test-set")
            m = evaluate_predictions(cfg, args.predictions, args.out)
        elif args.baseline:
            m = evaluate_baseline(cfg, args.out, kind=args.baseline, split=args.split, stats_path=args.stats,
                                  test_set=test_set)
        else:
            m = evaluate_checkpoint(cfg, args.checkpoint, args.out, split=args.split, stats_path=args.stats,
                                    progress=not args.quiet, test_set=test_set)
        mean, whole = m["mean"], m["pooled"]

        def fmt(v, spec):
            return "n/a" if v is None else format(v, spec)

        print(f"{m['variant']} (seed {m['seed']}) on {m['dataset']}/{m['split']}, {m['n_samples']} samples: "
              f"MAE {fmt(whole['mae'], '.4f')} RMSE {fmt(whole['rmse'], '.4f')} SSIM {fmt(whole['ssim'], '.4f')} "
              f"({fmt(mean['mae_ms'], '.1f')} m/s MAE), salt IoU {fmt(mean['salt_iou'], '.3f')}; "
              f"wrote {Path(args.out) / RUN.metrics}")

    return run


def command_predict(parser: argparse.ArgumentParser):
    """``fwi-attn predict --checkpoint model.pt --data SHARD|FOLDER ... [--stats stats.json] --out pred.h5``."""
    parser.add_argument("--checkpoint", required=True, help=f"{RUN.model} of a trained run")
    parser.add_argument("--data", required=True, nargs="+", metavar="SHARD",
                        help="fwi-attn shards with gathers (e.g. from `fwi-attn simulate`) or folders of *.h5 "
                             "shards; all of them go into one predictions file, in the order given")
    parser.add_argument("--stats", default=None, help="data/<dataset>/stats.json the network was trained with "
                        "(default: the normalisation recorded in the checkpoint)")
    parser.add_argument("--out", required=True, help="output predictions .h5 (schema fwi-attn-predictions/1)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per network call")

    def run(args):
        from fwi_attn.io.files import check_distinct
        from fwi_attn.learn.inference import InferenceError, predict, shard_paths

        if args.batch_size < 1:
            raise InferenceError(f"--batch-size must be at least 1, got {args.batch_size}")
        data = shard_paths(args.data, skip=args.out)  # folders expanded: a shard given twice is refused
        check_distinct(data, "--data")
        out = predict(args.checkpoint, data, args.stats, args.out, device=args.device,
                      batch_size=args.batch_size)
        print(f"wrote {out}")

    return run
