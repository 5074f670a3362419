"""``python -m study.run``: sample models with Optuna, train each for the budget, record them all.

    python -m study.run --trials 40                         # the five-minute study, runs/study.db
    python -m study.run --trials 16 --sweep ladder --budget 60
    python -m study.run --trials 40 --storage postgresql://user@host/db --workers 4

Running the same command again continues the study until it holds ``--trials`` complete trials.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from study.cli import ArgumentParser
from study.config import DEVICES
from study.data import max_stories_arg
from study.errors import cli_main, stop_like_ctrl_c
from study.kept.checkpoint import keep_arg
from study.orchestra.options import PRUNERS, RunOptions
from study.orchestra.repeat import prepare_repeats
from study.orchestra.runner import run_study
from study.storage.store import StorageFull, StorageGone
from sweeps import available

EXAMPLES = """examples:
  python -m study.run --trials 40                      # the five-minute study: 40 x 300 s of
                                                       # training (3.3 h) plus each trial's
                                                       # start-up and evaluation
  python -m study.run --trials 3 --budget 60 --data sample        # a first look, ~4 min
  python -m study.run --sweep ladder --trials 9 --study-name ladder-cpu-300s
  python -m study.run --workers 2 --storage postgresql+psycopg2://study@db/study"""


def build_parser() -> argparse.ArgumentParser:
    d = RunOptions()
    summary = __doc__.splitlines()[0].replace("``", "")
    p = ArgumentParser(
        prog="python -m study.run",
        description=summary,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_study_args(p, d)
    _add_training_args(p, d)
    _add_keep_args(p, d)
    _add_repeat_args(p)
    return p


def _add_study_args(p: argparse.ArgumentParser, d: RunOptions) -> None:
    """How many trials, of what budget and search space, in which study."""
    p.add_argument(
        "--trials",
        type=int,
        default=d.trials,
        metavar="N",
        help=f"complete trials the study should hold, earlier runs included (default {d.trials})",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=d.budget,
        metavar="SECONDS",
        help=f"training seconds per trial; a study keeps one budget (default {d.budget:g})",
    )
    p.add_argument(
        "--sweep",
        default=d.sweep,
        metavar="NAME|FILE.py",
        help=f"search space: a sweep of the package ({', '.join(available())}) or a "
        f".py file that defines suggest(trial) -> TrainConfig "
        f"(default %(default)s)",
    )
    p.add_argument(
        "--storage",
        default=d.storage,
        metavar="URL",
        help="SQLAlchemy URL of the study database (default %(default)s)",
    )
    p.add_argument("--study-name", default=None, help="study name (default: the sweep's name)")


def _add_training_args(p: argparse.ArgumentParser, d: RunOptions) -> None:
    """What every trial trains on and where: corpus, device, workers, seed, pruner."""
    p.add_argument(
        "--data",
        default=None,
        metavar="PATH|sample",
        help="corpus: a file or folder of .txt/.txt.xz/.txt.gz/.jsonl/.parquet, or "
        "sample (the bundled TinyStories sample) (default: TinyStories via "
        "datasets; the bundled sample when the hub cannot be reached)",
    )
    p.add_argument("--device", default=d.device, choices=DEVICES, help="(default %(default)s)")
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        metavar="N",
        help="worker processes on this machine, one CUDA device each where there are "
        "several (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="training seed of every trial and the sampler's seed (default %(default)s)",
    )
    p.add_argument("--pruner", default=d.pruner, choices=PRUNERS, help="(default %(default)s)")
    p.add_argument("--cache-dir", default=None, help="tokenizer and token cache folder")
    p.add_argument(
        "--max-stories",
        type=max_stories_arg,
        default=d.max_stories,
        help="training stories every trial reads: auto (enough that the fastest trial "
        "sees its training tokens at most ~4 times on this device, up to the "
        "whole corpus; see study.data.budget) or a number (default %(default)s)",
    )


def _add_keep_args(p: argparse.ArgumentParser, d: RunOptions) -> None:
    """What the run keeps (weights) and when it gives up (failures)."""
    p.add_argument(
        "--keep",
        type=keep_arg,
        default=d.keep,
        metavar="best|top-K|all|none",
        help="complete trials whose final weights stay on disk, best first (default %(default)s)",
    )
    p.add_argument(
        "--checkpoint-dir",
        default=None,
        metavar="DIR",
        help="folder of the kept weights, one subfolder per study (default: beside an SQLite "
        "file, as <file stem>.checkpoints/; a server storage keeps none without it)",
    )
    p.add_argument(
        "--max-failures",
        type=int,
        default=None,
        metavar="N",
        help="stop after this many failed trials in this run (default: --trials, at least 10)",
    )


def _add_repeat_args(p: argparse.ArgumentParser) -> None:
    """Re-running a study's best configurations with more seeds."""
    p.add_argument(
        "--repeat-top",
        type=int,
        default=None,
        metavar="K",
        help="re-run the K best configurations of --study-name with seeds 1..N-1 (--seeds N) "
        "as trials of the same study; give the flags the study ran with (sweep, budget, data)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="with --repeat-top: seeds per configuration, the original's seed 0 included",
    )


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    opts = RunOptions(
        trials=args.trials,
        budget=args.budget,
        sweep=args.sweep,
        storage=args.storage,
        study_name=args.study_name,
        data=args.data,
        device=args.device,
        workers=args.workers,
        seed=args.seed,
        pruner=args.pruner,
        cache_dir=args.cache_dir,
        max_failures=args.max_failures,
        max_stories=args.max_stories,
        keep=args.keep,
        checkpoint_dir=args.checkpoint_dir,
    )
    if args.repeat_top is not None or args.seeds is not None:
        opts = prepare_repeats(opts, top=args.repeat_top, seeds=args.seeds)
    with stop_like_ctrl_c():
        try:
            return run_study(opts)
        except KeyboardInterrupt:
            again = shlex.join(
                ["python", "-m", "study.run", *(sys.argv[1:] if argv is None else argv)]
            )
            print(
                f"interrupted: the trials in training were failed and queued again; resume "
                f"with: {again}",
                file=sys.stderr,
            )
            return 130
        except StorageGone as exc:
            print(
                f"error: {exc}; run the same command to go on (trials left running are "
                f"queued again then)",
                file=sys.stderr,
            )
            return 1
        except StorageFull as exc:
            print(f"error: {exc}; make room and run the same command to go on", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
