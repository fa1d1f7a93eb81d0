"""Data sub-commands of ``fwi-attn``: generate, simulate, testset, info, preview, check-config, stats.

Each ``command_<name>(parser)`` adds its arguments and returns the function to run
(see :mod:`fwi_attn.cli`).
"""
from __future__ import annotations

import warnings
from pathlib import Path

from fwi_attn.cli import add_config_argument, set_threads


def check_shard_space(cfg, dataset: str, split: str, shard: int, out) -> None:
    """Before simulating: room at ``out`` for shard ``shard`` of ``dataset``'s ``split`` (its size is
    known from the config; an unknown dataset or shard is left to the generator to name)."""
    from fwi_attn.io.files import check_space
    from fwi_attn.io.shard import shard_nbytes
    from fwi_attn.layout import shard_sizes

    ds = cfg.datasets.get(dataset)
    if ds is None or split not in ds.samples:
        return
    sizes = shard_sizes(ds.samples[split], ds.shard_size)
    if 0 <= shard < len(sizes):
        sv = cfg.survey
        check_space(out, shard_nbytes(sizes[shard], sv.n_shots, sv.nt, sv.n_receivers, sv.nz, sv.nx))


def command_generate(parser):
    add_config_argument(parser)
    parser.add_argument("--dataset", required=True, help="dataset name (a key of the config's datasets)")
    parser.add_argument("--split", required=True, choices=["train", "val", "test"])
    parser.add_argument("--shard", type=int, required=True, help="shard index within the split")
    parser.add_argument("--out", required=True, help="output .h5 path (written atomically)")
    parser.add_argument("--device", default=None, help="override study.device (auto, cpu, cuda)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args):
        from fwi_attn.config import load_config, resolve_device
        from fwi_attn.data.simulate import generate_shard
        from fwi_attn.io.files import check_output

        cfg = load_config(args.config)
        check_output(args.out)
        check_shard_space(cfg, args.dataset, args.split, args.shard, args.out)
        resolve_device(args.device or cfg.study.device)
        set_threads(cfg)
        path = generate_shard(cfg, args.dataset, args.split, args.shard, args.out,
                              device=args.device, progress=not args.quiet)
        print(f"wrote {path}")

    return run


def command_simulate(parser):
    parser.add_argument(
        "model",
        help="velocity model file, m/s: .npy ([nz, nx], a stack [n, nz, nx] or OpenFWI's [n, 1, nz, nx]), "
             ".h5/.hdf5 (dataset 'velocity', 2-D or 3-D), .sgy/.segy (one model) or .mat (variable "
             "'velocity'; v5 or v7.3); every model of the file is simulated. Models are resampled "
             "bilinearly to the config's grid keeping their physical extent; a model whose aspect ratio "
             "nz/nx would change more than 2x, or with an axis of fewer than 2 samples, is refused")
    add_config_argument(parser)
    parser.add_argument("--out", required=True, help="output .h5 shard path (one shard with every model)")
    parser.add_argument("--device", default=None, help="override study.device")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.data.simulate import simulate_file

        cfg = load_config(args.config)
        set_threads(cfg)
        _, n = simulate_file(cfg, args.model, args.out, device=args.device, progress=True)
        print(f"wrote {args.out}: {n} model{'s' if n != 1 else ''} from {args.model}")

    return run


def command_info(parser):
    parser.add_argument("paths", nargs="+", help="shard .h5 files")

    def run(args):
        from fwi_attn.io.shard import describe, validate_shard

        for i, path in enumerate(args.paths):
            if i:
                print()
            shard = validate_shard(path)
            print(describe(shard))
            print("valid:      yes")

    return run


def command_preview(parser):
    parser.add_argument("path", help="shard .h5 file")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("-n", type=int, default=4, help="number of models to draw")

    def run(args):
        from fwi_attn.io.files import check_output
        from fwi_attn.io.shard import validate_shard

        if args.n < 1:
            raise ValueError(f"-n must be at least 1 model, got {args.n}")
        check_output(args.out)
        shard = validate_shard(args.path)  # refuses NaN/inf: a picture of them would mislead

        from fwi_attn.results.physics_plots import plot_preview

        plot_preview(shard, args.out, n_models=args.n)
        print(f"wrote {args.out}")

    return run


def command_check_config(parser):
    add_config_argument(parser)
    parser.add_argument("--write", default=None, metavar="FILE",
                        help="also write the resolved, default-filled config to FILE (YAML, atomically)")

    def run(args):
        from fwi_attn.checks import check_study
        from fwi_attn.config import deepest_reflection, load_config
        from fwi_attn.data.survey import Survey
        from fwi_attn.io.files import atomic_path, check_output

        cfg = load_config(args.config)
        check_study(cfg)  # what the workflow checks besides load_config
        if args.write:
            import yaml

            check_output(args.write, what="--write")
            with atomic_path(args.write) as tmp:
                tmp.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        survey = Survey.from_config(cfg)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            survey.check(cfg.geology.vmin, cfg.geology.vmax)
        print(f"{cfg.source or 'defaults'}: valid")
        print(f"  grid {survey.nz}x{survey.nx} at {survey.dx:g} m; {survey.nt} samples at {survey.dt:g} s; "
              f"{survey.n_shots} shots, {survey.n_receivers} receivers; Ricker {survey.freq:g} Hz")
        print(f"  deepwave inner steps per sample at {survey.max_vel:g} m/s: {survey.inner_steps()}")
        arrival, family = deepest_reflection(cfg)
        record = survey.nt * survey.dt
        if record >= arrival:
            print(f"  record {record:g} s holds the deepest reflection at the largest offset "
                  f"({arrival:.3f} s through the slowest {family} draw)")
        else:
            print(f"  warning: record {record:g} s ends before the deepest reflection at the largest offset "
                  f"({arrival:.3f} s through the slowest {family} draw), allowed by survey.record_check: "
                  f"allow_short; the deepest part of such models is learned partly without its reflection")
        for w in caught:
            print(f"  warning: {w.message}")
        if args.write:
            print(f"wrote {args.write}")

    return run


def command_stats(parser):
    add_config_argument(parser)
    parser.add_argument("--dataset", default=None, help="dataset name (default: study.dataset)")
    parser.add_argument("--out", default=None, help="output JSON (default: <data_dir>/<dataset>/stats.json)")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.data.dataset import compute_stats
        from fwi_attn.data.sources import split_sources
        from fwi_attn.io.files import check_output, write_json
        from fwi_attn.io.shard import DatasetError
        from fwi_attn.layout import default_stats_path

        cfg = load_config(args.config)
        dataset = args.dataset or cfg.study.dataset
        if dataset not in cfg.datasets:
            raise DatasetError(f"dataset '{dataset}' is not in the config (defined: {', '.join(cfg.datasets)})")
        out = Path(args.out) if args.out else default_stats_path(cfg, dataset)
        check_output(out)
        stats = compute_stats(split_sources(cfg, "train", dataset), cfg.geology.vmin, cfg.geology.vmax,
                              **cfg.normalize, dataset=dataset, progress=True)
        write_json(out, stats)
        g = stats["gathers"]
        print(f"wrote {out}: {stats['n_samples']} train samples; transformed gathers [{g['min']:.4g}, {g['max']:.4g}]; "
              f"velocity bounds [{stats['velocity']['vmin']:g}, {stats['velocity']['vmax']:g}] m/s")

    return run


#: Help of the ``fwi-attn testset`` options (their flags, types and defaults come from
#: :class:`fwi_attn.data.testset.TestSetOptions` and the schema).
TESTSET_HELP = {
    "variable": "HDF5 dataset / MATLAB variable holding the models ('velocity', else the file's only one)",
    "model_dx": "the models' cell size in m: they are zoomed (scipy.ndimage.zoom, linear) by M / survey.dx to "
                "the study's cell size (none: already at survey.dx)",
    "fit": "resample each whole model onto the study's grid (as `fwi-attn simulate`) instead of cutting windows",
    "stride": "cells between window origins in depth and offset (none: the window size, survey.nz survey.nx; "
              "Z = 0: one row of windows at --top)",
    "top": "first row of the topmost windows, in study cells after resampling (skip a model's air/water so "
           "that the survey's sources sit at its surface)",
    "min_salt": "keep windows with at least this fraction of cells above evaluate.salt_threshold",
    "max_windows": "keep at most N windows, a draw seeded by --seed (none: all)",
    "seed": "seed of the --max-windows draw and of the --family models (recorded)",
    "out_of_range": "windows with velocities outside geology.vmin..vmax: drop them (reject) or clip them into "
                    "range; either way their count is printed",
}
TESTSET_METAVARS = {"model_dx": "M", "stride": ("Z", "X"), "top": "CELLS", "min_salt": "FRACTION",
                    "max_windows": "N"}


def command_testset(parser):
    parser.add_argument("models", nargs="*",
                        help="velocity model files (m/s) or folders of them: .npy ([nz, nx] or a stack [n, nz, nx] / "
                             "[n, 1, nz, nx]), .h5/.hdf5, .sgy/.segy (traces = x, samples = depth), .mat (v5 or v7.3); "
                             "none with --family")
    parser.add_argument("--family", default=None,
                        help="instead of files: draw --samples models of this generator family (docs/geology.md) with "
                             "the config's geology, seeded by --seed")
    parser.add_argument("--samples", type=int, default=None, help="models drawn with --family")
    add_config_argument(parser)
    parser.add_argument("--name", required=True,
                        help="the set's name: recorded in its shards and the label of its metrics")
    parser.add_argument("--out", required=True, help="output folder: shard-NNNN.h5 and testset.json")
    from fwi_attn.data.testset import add_option_arguments

    add_option_arguments(parser, TESTSET_HELP, TESTSET_METAVARS)
    parser.add_argument("--shard-size", type=int, default=None,
                        help="samples per shard (default: the study dataset's shard_size)")
    parser.add_argument("--overwrite", action="store_true", help="replace the .h5 files already in --out")
    parser.add_argument("--device", default=None, help="override study.device")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args):
        from fwi_attn.config import load_config, resolve_device
        from fwi_attn.data.testset import TestSetOptions, build_test_set

        cfg = load_config(args.config)
        resolve_device(args.device or cfg.study.device)
        set_threads(cfg)
        options = TestSetOptions.from_args(args)
        shards = build_test_set(cfg, args.models, args.name, args.out, options, shard_size=args.shard_size,
                                overwrite=args.overwrite, device=args.device, progress=not args.quiet,
                                family=args.family, samples=args.samples)
        from fwi_attn.io.shard import read_shard

        n = sum(read_shard(p, load=False).n for p in shards)
        print(f"wrote {Path(args.out)}: test set {args.name}, {n} models in {len(shards)} shard(s) "
              f"and {Path(args.out) / 'testset.json'}")

    return run
