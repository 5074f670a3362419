"""``python -m analysis.curves``: held-out and training loss against elapsed seconds and
against tokens seen, one line per trial coloured by its size (parameters, log scale).

Loss is in nats per token; elapsed seconds count training time only (evaluation pauses the
clock), so every curve of a five-minute study ends near 300 s. Axes are logarithmic.
"""

from __future__ import annotations

import argparse

from analysis.args import add_device_arg, add_study_args, analysis_main, make_parser, setup_logging
from analysis.views.curves import run_curves
from study.outputs import add_force_arg


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.curves",
        __doc__,
        examples=[
            "python -m analysis.curves                       # newest study, writes curves.png",
            "python -m analysis.curves --study-name default --device cpu --plot cpu_curves.svg",
        ],
    )
    add_study_args(parser)
    parser.add_argument(
        "--plot",
        default="curves.png",
        metavar="PATH",
        help="the figure to write, .png/.svg/.pdf (default curves.png)",
    )
    add_device_arg(parser)
    add_force_arg(parser)
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
        run_curves(
            storage=args.storage,
            study_name=args.study_name,
            plot_path=args.plot,
            force=args.force,
            device=args.device,
            baseline=not args.no_baseline,
        )
    )


if __name__ == "__main__":
    main()
