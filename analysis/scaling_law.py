"""``python -m analysis.scaling_law``: fit L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla
Approach 3) and predict the loss-optimal size for the budget.

On a study it uses every complete trial's final point and its curve points; ``--csv`` reads
columns ``params,tokens,loss``. Prints E, A, B, alpha, beta and the compute-optimal exponents
a = beta/(alpha+beta), b = alpha/(alpha+beta); ``--json`` writes exactly those seven keys.
"""

from __future__ import annotations

import argparse

from analysis.args import add_budget_args, add_study_args, analysis_main, make_parser, setup_logging
from analysis.views.scaling_law import run_scaling_law


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.scaling_law",
        __doc__,
        examples=[
            "python -m analysis.scaling_law --plot loss_law.png --json loss_law.json",
            "python -m analysis.scaling_law --grid coarse --max-epochs 4   # quick look, fresh data",
            "python -m analysis.scaling_law --csv points.csv --budget 300  # columns "
            "params,tokens,loss",
        ],
    )
    add_study_args(parser, csv_columns="params,tokens,loss")
    add_budget_args(parser)
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="write E, A, B, alpha, beta, a, b as JSON"
    )
    parser.add_argument(
        "--plot",
        default=None,
        metavar="PATH",
        help="draw the fit and the prediction (.png/.svg/.pdf)",
    )
    parser.add_argument(
        "--grid",
        choices=("chinchilla", "coarse"),
        default="chinchilla",
        help="starts for L-BFGS: Chinchilla's full grid (5400, default) or a "
        "243-start subset for quick looks",
    )
    parser.add_argument(
        "--max-epochs",
        type=float,
        default=None,
        metavar="E",
        help="leave out points that had seen the training data more than E "
        "times (the law assumes fresh data; default: keep all)",
    )
    return parser


@analysis_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    print(
        run_scaling_law(
            storage=args.storage,
            study_name=args.study_name,
            csv=args.csv,
            budget=args.budget,
            ratio=args.ratio,
            device=args.device,
            json_path=args.json,
            plot_path=args.plot,
            grid=args.grid,
            max_epochs=args.max_epochs,
        )
    )


if __name__ == "__main__":
    main()
