"""``python -m analysis.compare``: held-out quality by positional scheme (``--by pos``), MLP
(``--by mlp``), both (``--by cell``) or regularisation (``--by reg``: weight decay and dropout, for
a grid of settings such as the sweep ``regularise``), per device. ``--with STUDY`` adds another
study's trials (from the same storage) to the comparison: the ladder that ran without the grid's
settings, say.

For each choice: its number of trials, its best trial (size, learning rate) and its median. Then,
since a sweep draws the choice together with size and learning rate, the comparison at equal size:
every model shape tried with more than one choice, the best of each there, and how often each won.
"""

from __future__ import annotations

import argparse

from analysis.args import add_device_arg, add_study_args, analysis_main, make_parser, setup_logging
from analysis.selection import METRICS
from analysis.views.compare import COMPARE_BY, run_compare
from study.outputs import add_force_arg


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.compare",
        __doc__,
        examples=[
            "python -m analysis.compare --by pos",
            "python -m analysis.compare --study-name default --by cell --metric bpb --json cmp.json",
            "python -m analysis.compare --study-name regularise-h200-300s --with ladder-gpu-h200-300s "
            "--by reg --metric bpb",
        ],
    )
    add_study_args(parser)
    parser.add_argument(
        "--with",
        dest="also",
        action="append",
        default=[],
        metavar="STUDY",
        help="another study of the same storage whose trials join the comparison (repeatable)",
    )
    parser.add_argument(
        "--by", choices=list(COMPARE_BY), default="pos", help="what to compare (default pos)"
    )
    parser.add_argument(
        "--metric",
        choices=sorted(METRICS),
        default="ppl",
        help="ppl: per-token perplexity (default); bpb: bits per byte (tokenizer-free)",
    )
    add_device_arg(parser)
    add_force_arg(parser)
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the comparison as JSON"
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
        run_compare(
            storage=args.storage,
            study_name=args.study_name,
            by=args.by,
            metric=args.metric,
            device=args.device,
            json_path=args.json,
            force=args.force,
            also=args.also,
            baseline=not args.no_baseline,
        )
    )


if __name__ == "__main__":
    main()
