"""``python -m analysis.crossover``: the size whose tokens in the budget equal 20 x its size.

Fits tokens/s = c * N^-k on a study's trials (``--storage``, ``--study-name``) or on a CSV with
columns ``params,tokens_per_second`` (``--csv``, with ``--budget``), then solves
T(N) * budget = ratio * N for N*, with a 90% bootstrap interval.
"""

from __future__ import annotations

import argparse

from analysis.args import add_budget_args, add_study_args, analysis_main, make_parser, setup_logging
from analysis.views.crossover import run_crossover
from study.outputs import add_force_arg


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.crossover",
        __doc__,
        examples=[
            "python -m analysis.crossover --device cpu --plot crossover.png",
            "python -m analysis.crossover --study-name default --json crossover.json",
            "python -m analysis.crossover --csv machine.csv --budget 300   # columns "
            "params,tokens_per_second",
        ],
    )
    add_study_args(parser, csv_columns="params,tokens_per_second")
    add_budget_args(parser)
    add_force_arg(parser)
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="write n_star (parameters), tokens_at_n_star, c, k, n_star_low, "
        "n_star_high, ... as JSON",
    )
    parser.add_argument(
        "--plot",
        default=None,
        metavar="PATH",
        help="draw tokens in budget against N beside ratio x N (.png/.svg/.pdf)",
    )
    parser.add_argument(
        "--throughput-plot",
        default=None,
        metavar="PATH",
        help="draw measured tokens/s against N with the fitted power law (.png/.svg/.pdf)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        help="bootstrap resamples for the intervals (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    return parser


@analysis_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    print(
        run_crossover(
            storage=args.storage,
            study_name=args.study_name,
            csv=args.csv,
            budget=args.budget,
            ratio=args.ratio,
            device=args.device,
            json_path=args.json,
            plot_path=args.plot,
            throughput_plot_path=args.throughput_plot,
            force=args.force,
            n_boot=args.bootstrap,
            seed=args.seed,
        )
    )


if __name__ == "__main__":
    main()
