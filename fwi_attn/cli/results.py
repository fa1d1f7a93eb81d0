"""Results sub-commands of ``fwi-attn``: figures, report.

Each ``command_<name>(parser)`` adds the command's arguments and returns the function to run
(see :mod:`fwi_attn.cli`).
"""
from __future__ import annotations

from fwi_attn.cli import add_config_argument, set_threads


def command_figures(parser):
    add_config_argument(parser)
    parser.add_argument("--variant", default=None, help="draw only this run's figures (with --seed)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run given by --variant")
    parser.add_argument("--compare", action="store_true",
                        help="draw only the comparison figures (all runs); default without --variant: both")

    def run(args):
        from fwi_attn.config import load_config
        from fwi_attn.results.plots import draw_comparison_figures, draw_run_figures

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
