"""``python -m study.generate``: continue a prompt with a study's kept model.

    python -m study.generate --study-name default --prompt "Once upon a time"
    python -m study.generate --study-name default --trial 7 --prompt "The cat" --seed 1

The default model is the study's best complete trial whose weights are still kept
(``--keep``). The same seed gives the same text on the same device.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from study.cli import ArgumentParser
from study.config import DEVICES
from study.errors import UsageError, cli_main
from study.kept.checkpoint import load_tokens_of
from study.kept.model import DEFAULT_STORAGE, find, generate, load


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m study.generate",
        description="Generate text from a study's kept model (default: its best trial).",
    )
    p.add_argument("--study-name", required=True)
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="study database (default %(default)s)"
    )
    p.add_argument("--trial", type=int, default=None, help="trial number (default: the best kept)")
    p.add_argument("--prompt", default="Once upon a time", help="(default %(default)r)")
    p.add_argument("--tokens", type=int, default=200, help="new tokens (default %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="(default %(default)s)")
    p.add_argument("--top-k", type=int, default=40, help="(default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default %(default)s)")
    p.add_argument("--device", default="cpu", choices=DEVICES, help="(default %(default)s)")
    p.add_argument("--cache-dir", type=Path, help="tokenizer and token cache folder")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.tokens < 1:
        raise UsageError(f"--tokens must be at least 1, got {args.tokens}")
    if not args.temperature > 0:
        raise UsageError(f"--temperature must be positive, got {args.temperature}")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    kept = find(args.storage, args.study_name, trial=args.trial)
    checkpoint = load(kept.stem, device=args.device)
    data = load_tokens_of(checkpoint, cache_dir=args.cache_dir)
    text = generate(
        checkpoint,
        data=data,
        prompt=args.prompt,
        tokens=args.tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        seed=args.seed,
    )
    print(f"# trial {kept.number} of {args.study_name} ({checkpoint.path})", file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
