"""``python -m analysis.baseline``: the n-gram baselines a trained model must beat.

Interpolated Witten-Bell n-gram models (orders 1-5 by default) counted from a corpus's training
tokens and scored on exactly the held-out windows trials are scored on, in bits per byte and
per-token perplexity. With ``--storage``/``--study-name`` the corpus, tokenizer and windows are
the ones the study's trials recorded in their config; with ``--data`` they are given by flags.
Results are cached beside the corpus's token cache (computed once).
"""

from __future__ import annotations

import argparse

from analysis.args import add_study_args, analysis_main, make_parser, setup_logging
from study.errors import UsageError
from study.outputs import add_force_arg, check_output


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m analysis.baseline",
        __doc__,
        examples=[
            "python -m analysis.baseline --data sample",
            "python -m analysis.baseline --storage sqlite:///study.db --study-name default "
            "--json baseline.json",
        ],
    )
    add_study_args(parser)
    parser.add_argument(
        "--data",
        default=None,
        metavar="PATH|sample",
        help="score this corpus instead of a study's (a local corpus or the bundled sample)",
    )
    parser.add_argument("--vocab-size", type=int, default=4096, help="with --data (default 4096)")
    parser.add_argument("--seq-len", type=int, default=256, help="with --data (default 256)")
    parser.add_argument(
        "--eval-tokens", type=int, default=65_536, help="with --data (default 65536)"
    )
    parser.add_argument(
        "--eval-bytes",
        type=int,
        default=None,
        metavar="B",
        help="with --data: score the first whole held-out stories holding at least B bytes "
        "(the byte protocol of a study of several vocabularies) instead of --eval-tokens",
    )
    parser.add_argument(
        "--max-stories",
        type=int,
        default=None,
        help="with --data: training stories read (default all)",
    )
    parser.add_argument(
        "--max-order", type=int, default=5, help="orders 1 to this are scored (1-8, default 5)"
    )
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the results here")
    add_force_arg(parser)
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="token cache folder")
    parser.add_argument(
        "--no-cache", action="store_true", help="score again even where a result is cached"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log each order's time")
    return parser


@analysis_main
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    from pathlib import Path

    from analysis.views.baseline import (
        compute_baselines,
        format_baselines,
        protocol_from_args,
    )
    from study.fileio import write_json

    if not 1 <= args.max_order <= 8:
        raise UsageError(f"--max-order must be 1 to 8, got {args.max_order}")
    check_output(args.json, what="--json", kind="json", force=args.force)
    protocol = protocol_from_args(args)
    result = compute_baselines(
        protocol,
        orders=tuple(range(1, args.max_order + 1)),
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        use_cache=not args.no_cache,
    )
    print(format_baselines(result))
    if args.json is not None:
        write_json(args.json, result.to_dict())


if __name__ == "__main__":
    main()
