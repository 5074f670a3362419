"""``python -m analysis.frontier``: held-out perplexity (or bits per byte) against parameters.

Every configuration is a point (its seeds grouped: the mean, a +-1 sd bar, each seed faint),
coloured by depth, positional scheme, dropout, weight decay or any parameter the study sweeps
(``--color-by``: a legend for few values, a colour bar for many numbers); the Pareto frontier is
drawn as a line and each device's crossover N* is marked.
"""

from __future__ import annotations

import argparse

from analysis.args import add_budget_args, add_study_args, analysis_main, make_parser, setup_logging
from analysis.selection import METRICS
from analysis.views.frontier import COLOR_BY, run_frontier
from study.outputs import add_force_arg


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.frontier",
        __doc__,
        examples=[
            "python -m analysis.frontier --plot frontier.png",
            "python -m analysis.frontier --study-name default --metric bpb --color-by pos "
            "--plot frontier_bpb.svg",
            "python -m analysis.frontier --study-name regularise --metric bpb --color-by dropout "
            "--plot frontier_dropout.png",
        ],
    )
    add_study_args(parser)
    add_budget_args(parser)
    add_force_arg(parser)
    parser.add_argument(
        "--plot", default=None, metavar="PATH", help="write the figure here (.png/.svg/.pdf)"
    )
    parser.add_argument(
        "--metric",
        choices=sorted(METRICS),
        default="ppl",
        help="ppl: per-token perplexity (default); bpb: bits per byte (tokenizer-free)",
    )
    parser.add_argument(
        "--color-by",
        default="depth",
        metavar="NAME",
        help=f"what the point colours show: {', '.join(COLOR_BY)}, or any parameter the "
        "study sweeps (a config field such as lr or n_head, an Optuna parameter such as "
        "size or cell; default depth)",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="leave out the n-gram baseline of the study's corpus (else computed once, cached)",
    )
    return parser


@analysis_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    print(
        run_frontier(
            storage=args.storage,
            study_name=args.study_name,
            plot_path=args.plot,
            force=args.force,
            metric=args.metric,
            color_by=args.color_by,
            budget=args.budget,
            ratio=args.ratio,
            device=args.device,
            baseline=not args.no_baseline,
        )
    )


if __name__ == "__main__":
    main()
