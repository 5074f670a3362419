"""``python -m study.evaluate``: score a study's kept model on another held-out text.

    python -m study.evaluate --study-name default --trial 7 --data valid.txt.xz

Prints the held-out loss (nats per token), perplexity and bits per byte on the file's stories,
in the trainer's windows (``--eval-tokens`` targets; default the trial's own protocol, its
eval_tokens or the whole stories of its eval_bytes). Bits per byte
do not depend on the tokenizer, so they compare with published numbers on the same text.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from study.cli import ArgumentParser
from study.config import DEVICES
from study.errors import UsageError, cli_main
from study.kept.checkpoint import load_tokens_of
from study.kept.model import DEFAULT_STORAGE, find, load, score, tokens_of_text


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m study.evaluate",
        description="Re-score a study's kept model on a held-out text, in bits per byte.",
    )
    p.add_argument("--study-name", required=True)
    p.add_argument(
        "--storage", default=DEFAULT_STORAGE, help="study database (default %(default)s)"
    )
    p.add_argument("--trial", type=int, default=None, help="trial number (default: the best kept)")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="a .txt/.txt.xz/.txt.gz/.jsonl/.parquet file of stories",
    )
    p.add_argument(
        "--eval-tokens",
        type=int,
        default=None,
        help="held-out targets to score, in whole windows (default: the trial's own protocol)",
    )
    p.add_argument("--device", default="cpu", choices=DEVICES, help="(default %(default)s)")
    p.add_argument("--cache-dir", type=Path, help="tokenizer and token cache folder")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.eval_tokens is not None and args.eval_tokens < 1:
        raise UsageError(f"--eval-tokens must be at least 1, got {args.eval_tokens}")
    kept = find(args.storage, args.study_name, trial=args.trial)
    checkpoint = load(kept.stem, device=args.device)
    data = load_tokens_of(checkpoint, cache_dir=args.cache_dir)
    ids = tokens_of_text(args.data, data=data)
    loss, bpb, targets = score(checkpoint, ids, data=data, eval_tokens=args.eval_tokens)
    out = {
        "trial": kept.number,
        "data": str(args.data),
        "val_loss": loss,
        "val_ppl": math.exp(loss),
        "val_bpb": bpb,
        "eval_tokens": targets,
        "recorded_val_bpb": checkpoint.meta.get("val_bpb"),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"trial {kept.number}: {args.data}: loss {loss:.4f} | ppl {math.exp(loss):.2f} | "
            f"bpb {bpb:.4f} on {targets} tokens (recorded on its own held-out split: "
            f"bpb {checkpoint.meta.get('val_bpb', float('nan')):.4f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
