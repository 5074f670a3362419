"""``python -m analysis.report --out report.html``: one self-contained HTML page for a study.

Study summary (with a warning when trials saw their data more than 4 times), frontier,
throughput fit, crossover, loss curves, loss-law fit and prediction, the prediction checked on
held-out sizes, positional scheme and MLP compared, the best trials' samples, epochs per trial,
the trials that failed and the commands that made it; figures embedded as PNG. Sizes are
parameters, tokens are tokens seen in the budget, loss is nats per token.
"""

from __future__ import annotations

import argparse

from analysis.args import add_budget_args, add_study_args, analysis_main, make_parser, setup_logging
from analysis.page.report import run_report
from study.outputs import add_force_arg


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.report",
        __doc__,
        examples=[
            "python -m analysis.report                      # newest study, writes report.html",
            "python -m analysis.report --study-name default --out default.html --grid coarse",
            "python -m analysis.report --study-name regularise --color-by dropout",
        ],
    )
    add_study_args(parser)
    add_budget_args(parser, device=False)
    add_force_arg(parser)
    parser.add_argument(
        "--out",
        default="report.html",
        metavar="PATH",
        help="the HTML file to write (default report.html)",
    )
    parser.add_argument(
        "--top", type=int, default=5, help="samples from this many best trials (default 5)"
    )
    parser.add_argument(
        "--grid",
        choices=("chinchilla", "coarse"),
        default="chinchilla",
        help="L-BFGS starts for the loss law: chinchilla (5400, default) or coarse (243, quicker)",
    )
    parser.add_argument(
        "--color-by",
        default=None,
        metavar="NAME",
        help="colour the frontier's second figure by this (as analysis.frontier --color-by: "
        "dropout, weight_decay, any parameter the study sweeps; default the positional scheme)",
    )
    return parser


@analysis_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    print(
        run_report(
            storage=args.storage,
            study_name=args.study_name,
            out=args.out,
            budget=args.budget,
            ratio=args.ratio,
            top=args.top,
            grid=args.grid,
            color_by=args.color_by,
            force=args.force,
        )
    )


if __name__ == "__main__":
    main()
