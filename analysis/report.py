"""``python -m analysis.report --out report.html``: one self-contained HTML page for a study.

Study summary, frontier, throughput fit, crossover, loss-law fit and prediction, the best
trials' samples, epochs per trial and the commands that made it; figures embedded as PNG.
"""

from __future__ import annotations

import argparse

from analysis.args import add_budget_args, add_study_args, setup_logging
from analysis.report_html import run_report
from study.errors import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    add_study_args(parser)
    add_budget_args(parser, device=False)
    parser.add_argument("--out", default="report.html", metavar="PATH",
                        help="the HTML file to write (default report.html)")
    parser.add_argument("--top", type=int, default=5, help="samples from this many best trials")
    parser.add_argument("--grid", choices=("chinchilla", "coarse"), default="chinchilla",
                        help="L-BFGS starts for the loss law (see analysis.scaling_law)")
    return parser


@cli_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging()
    print(run_report(
        storage=args.storage, study_name=args.study_name, out=args.out, budget=args.budget,
        ratio=args.ratio, top=args.top, grid=args.grid,
    ))


if __name__ == "__main__":
    main()
