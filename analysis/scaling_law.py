"""``python -m analysis.scaling_law``: fit L(N, D) = E + A/N^alpha + B/D^beta (Chinchilla
Approach 3) and predict the loss-optimal size for the budget.

On a study it fits every complete trial's end-of-training point (``--curve-points`` adds the
mid-run curve points, labelled as such: with a cosine schedule they are losses of a model that
had not annealed); ``--csv`` reads columns ``params,tokens,loss``. The law is checked as
``analysis.predict`` checks its own (data repeated beyond 4 epochs, exponents out of range, E at
zero, an optimum on the search bound, too few sizes): a law that fails is printed and drawn with
"NOT TRUSTED: why", and the command still exits 0. Prints E, A, B, alpha, beta and the compute-optimal exponents
a = beta/(alpha+beta), b = alpha/(alpha+beta), then 95% bootstrap intervals of E, A, B, alpha,
beta and of each device's loss-optimal N: ``--bootstrap N`` resamples (default 200, fixed seed 0;
0 turns it off) of the configurations fitted, a configuration's seeds and curve points drawn
together. ``--json`` writes those seven keys and, unless ``--bootstrap 0``, the intervals under
``bootstrap``.
"""

from __future__ import annotations

import argparse

from analysis.args import add_budget_args, add_study_args, analysis_main, make_parser, setup_logging
from analysis.views.scaling_law import BOOTSTRAP_DEFAULT, run_scaling_law
from study.outputs import add_force_arg


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.scaling_law",
        __doc__,
        examples=[
            "python -m analysis.scaling_law --plot loss_law.png --json loss_law.json",
            "python -m analysis.scaling_law --grid coarse --max-epochs 4   # quick look, fresh data",
            "python -m analysis.scaling_law --bootstrap 1000               # finer intervals",
            "python -m analysis.scaling_law --csv points.csv --budget 300  # columns "
            "params,tokens,loss",
        ],
    )
    add_study_args(parser, csv_columns="params,tokens,loss")
    add_budget_args(parser)
    add_force_arg(parser)
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="write E, A, B, alpha, beta, a, b (and the bootstrap intervals) as JSON",
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
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=BOOTSTRAP_DEFAULT,
        metavar="N",
        help=f"resamples for the 95%% intervals of the constants and the loss-optimal N "
        f"(default {BOOTSTRAP_DEFAULT}, seed 0; 0: none)",
    )
    parser.add_argument(
        "--curve-points",
        action="store_true",
        help="also fit the trials' mid-run curve points (default: end-of-training points only)",
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
            force=args.force,
            grid=args.grid,
            max_epochs=args.max_epochs,
            curve_points=args.curve_points,
            bootstrap=args.bootstrap,
        )
    )


if __name__ == "__main__":
    main()
