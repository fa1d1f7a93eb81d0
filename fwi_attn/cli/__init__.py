"""The ``fwi-attn`` command line: one sub-command per pipeline step.

One module per stage in this package (``data``, ``learn``, ``physics``, ``results``) defines
``command_<name>(parser)``, which adds the command's arguments and returns the function to run;
the work it calls lives in the stage's own package. This module is the one shared preamble: the
``--config`` option, the thread setting, and the error handling (one line per failure,
``--debug`` for the traceback). Command modules are imported only for the command being run and
import their stage lazily, so ``fwi-attn info`` does not pay for importing the networks.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys


def add_config_argument(parser, required: bool = True) -> None:
    """The ``--config/-c`` option every ``fwi-attn`` sub-command takes."""
    parser.add_argument("--config", "-c", required=required,
                        help="study config YAML, or a preset name (default, paper, openfwi)")


def set_threads(cfg) -> None:
    """A command's CPU threads: ``study.threads`` (Snakemake runs jobs side by side, so each must
    stay within its share of the cores).

    With torch loaded, ``torch.set_num_threads``; otherwise ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS``, which torch (and deepwave's OpenMP loops) read when they load, so that a
    command that may never need torch (the figures) does not pay ~3 s to import it.
    """
    threads = str(cfg.study.threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(cfg.study.threads)
    else:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads


#: name -> (module that defines ``command_<name>``, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("fwi_attn.cli.data", "generate one HDF5 shard of a dataset (velocity models + gathers)"),
    "simulate": ("fwi_attn.cli.data", "simulate every velocity model of a file (.npy stack, .h5, SEG-Y) with the config's survey"),
    "testset": ("fwi_attn.cli.data", "turn velocity model files (.npy, .h5, SEG-Y, .mat) into a scored test split on the study's survey"),
    "info": ("fwi_attn.cli.data", "print and validate a shard's metadata"),
    "preview": ("fwi_attn.cli.data", "draw a few models of a shard with their gathers"),
    "check-config": ("fwi_attn.cli.data", "validate a config file and print the survey's stability checks"),
    "variants": ("fwi_attn.cli.learn", "list every network variant with its parameters and MACs"),
    "stats": ("fwi_attn.cli.data", "normalisation constants from a dataset's train split -> stats.json"),
    "train": ("fwi_attn.cli.learn", "train one network variant with one seed"),
    "evaluate": ("fwi_attn.cli.learn", "predict the test split or a named test set and compute metrics (or score the mean-model baseline, or a predict output)"),
    "predict": ("fwi_attn.cli.learn", "predict velocity for a user's gathers with a trained checkpoint"),
    "physics": ("fwi_attn.cli.physics", "re-simulate predicted models and measure the data misfit"),
    "refine": ("fwi_attn.cli.physics", "refine a starting model by full-waveform inversion with deepwave"),
    "select": ("fwi_attn.cli.results", "pick the confirmation stage's arms from the screening runs' validation MAE -> selection.json"),
    "figures": ("fwi_attn.cli.results", "draw a study's per-run and comparison figures"),
    "compare-sets": ("fwi_attn.cli.results", "distances between two sets of velocity models (histograms, depth, salt) -> JSON, table, PNG"),
    "report": ("fwi_attn.cli.results", "write the weekly-report bundle (report.md, report.html)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fwi-attn",
        description="Salt-body full-waveform inversion with attention UNets.",
        epilog="Run 'fwi-attn COMMAND --help' for a command's options.",
    )
    from fwi_attn import __version__

    parser.add_argument("--version", action="version", version=f"fwi-attn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    return parser


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    # A user's error (bad config, corrupt shard, CFL, unwritable path...) says what is wrong in
    # its message; anything else is named by its type, since its message may not be enough.
    if isinstance(e, (ValueError, OSError)) and not isinstance(e, UnicodeError):
        return text
    return f"{type(e).__name__}: {text} (rerun with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command. Every failure is one line on stderr (exit 1) without a traceback,
    unless ``--debug`` (anywhere on the line) or ``FWI_ATTN_DEBUG=1`` asks for it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("FWI_ATTN_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints help or the "invalid choice" error and exits
        return 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    parser = argparse.ArgumentParser(prog=f"fwi-attn {name}", description=help_text,
                                     epilog="--debug: show the Python traceback of a failure")
    try:
        module = importlib.import_module(module_name)
        run = getattr(module, f"command_{name.replace('-', '_')}")(parser)
        args = parser.parse_args(argv[1:])
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed: not an error. Point stdout at /dev/null so that
        # the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as e:
        if debug:
            raise
        print(f"fwi-attn {name}: error: {_one_line(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
