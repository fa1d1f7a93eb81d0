"""Results sub-commands of ``fwi-attn``: select, figures, report, compare-sets.

Each ``command_<name>(parser)`` adds the command's arguments and returns the function to run
(see :mod:`fwi_attn.cli`).
"""
from __future__ import annotations

from fwi_attn.cli import add_config_argument, set_threads


def command_select(parser):
    add_config_argument(parser)
    parser.add_argument("--out", default=None, help="selection.json to write (default: <study>/selection.json)")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.io.files import check_output
        from fwi_attn.layout import selection_path, study_dir
        from fwi_attn.results.design import select, write_selection

        cfg = load_config(args.config)
        out = args.out or selection_path(study_dir(cfg))
        check_output(out)
        record = select(cfg, study_dir(cfg))
        write_selection(out, record)
        for r in record["scores"]:
            mark = "selected" if r["variant"] in record["selected"] else ""
            print(f"{r['variant']:>12}  val MAE {r['val_mae']:.4f}  {mark}")
        print(f"confirmation arms: {', '.join(record['arms'])} on seeds {record['confirm_seeds']}\nwrote {out}")

    return run


def command_figures(parser):
    add_config_argument(parser)
    parser.add_argument("--variant", default=None, help="draw only this run's figures (with --seed)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run given by --variant")
    parser.add_argument("--compare", action="store_true",
                        help="draw only the comparison figures (all runs); default without --variant: both")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.results.figures import draw_comparison_figures, draw_run_figures

        cfg = load_config(args.config)
        set_threads(cfg)
        if (args.variant is None) != (args.seed is None):
            raise ValueError("--variant and --seed go together")
        written = []
        if args.variant is not None:
            written += draw_run_figures(cfg, args.variant, args.seed)
        else:
            if not args.compare:
                from fwi_attn.layout import study_dir
                from fwi_attn.results.study import load_study

                study = load_study(study_dir(cfg), config=cfg.to_dict())
                for v, s in sorted(study.metrics, key=lambda k: (study.variants.index(k[0]), k[1])):
                    written += draw_run_figures(cfg, v, s)
            written += draw_comparison_figures(cfg)
        for path in written:
            print(f"wrote {path}")

    return run


def command_report(parser):
    add_config_argument(parser)
    parser.add_argument("--reference", default=None,
                        help="variant to rank against (default: the config's study.reference)")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.layout import study_dir
        from fwi_attn.results.report import write_report

        cfg = load_config(args.config)
        md, html = write_report(study_dir(cfg), args.reference or cfg.study.reference, cfg.study.title,
                                config=cfg.to_dict())
        print(f"wrote {md}\nwrote {html}")

    return run


def command_compare_sets(parser):
    parser.add_argument("a", help="set A: a folder of shards (a study split, a `fwi-attn testset` set), a shard, "
                                  "a model file (.npy, .h5, .sgy, .mat) or a folder of model files")
    parser.add_argument("b", help="set B, as A")
    parser.add_argument("--out", required=True, help="output folder: compare_sets.json and compare_sets.png")
    parser.add_argument("--names", nargs=2, default=None, metavar=("A", "B"),
                        help="labels of the sets (default: their file or folder names)")
    add_config_argument(parser, required=False)
    parser.add_argument("--salt-threshold", type=float, default=None, metavar="M/S",
                        help="velocity above which a cell is salt (default: the config's evaluate.salt_threshold)")
    parser.add_argument("--dx", type=float, default=None, metavar="M",
                        help="cell size of sets given as model files (shards record their own); depths and "
                             "areas are in cells when no set has one")
    parser.add_argument("--variable", default=None,
                        help="HDF5 dataset / MATLAB variable holding the models of model files")

    def run(args):
        from fwi_attn.config import load_config, validate_section
        from fwi_attn.io.files import check_output
        from fwi_attn.results.compare_sets import compare_sets, format_table, load_model_set, write_comparison

        if args.salt_threshold is not None:
            threshold = args.salt_threshold
        elif args.config is not None:
            threshold = load_config(args.config).evaluate.salt_threshold
        else:
            threshold = validate_section("evaluate", {})["salt_threshold"]
        if not threshold > 0:
            raise ValueError(f"--salt-threshold must be a positive velocity in m/s, got {threshold:g}")
        check_output(args.out, folder=True)
        names = args.names or (None, None)
        sets = [load_model_set(p, name=n, dx=args.dx, variable=args.variable) for p, n in zip((args.a, args.b), names)]
        if sets[0].name == sets[1].name:
            sets[0].name, sets[1].name = f"A:{sets[0].name}", f"B:{sets[1].name}"
        result = compare_sets(*sets, threshold)
        print(format_table(result))
        for path in write_comparison(result, args.out):
            print(f"wrote {path}")

    return run
