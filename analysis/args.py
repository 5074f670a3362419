"""Command-line options the analysis commands share."""

from __future__ import annotations

import argparse
import functools
import logging
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from analysis.fits.errors import FitError
from analysis.load import DEFAULT_STORAGE
from study.cli import ArgumentParser
from study.errors import UsageError, cli_main

T = TypeVar("T")


def analysis_main(fn: Callable[..., T]) -> Callable[..., T]:
    """An analysis command's ``main`` under :func:`study.errors.cli_main`, a fit's
    :class:`~analysis.fits.errors.FitError` read as bad input like a UsageError: one line on
    stderr (``error: ...``) and exit status 2, never a traceback."""

    @functools.wraps(fn)
    def as_usage(*args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        except FitError as exc:
            raise UsageError(str(exc)) from None

    return cli_main(as_usage)


def make_parser(prog: str, doc: str | None, *, examples: Sequence[str]) -> argparse.ArgumentParser:
    """A command's parser: its module docstring as the description, reST markup removed (a
    terminal shows ``x`` literally), and ``examples`` as an epilog, layout kept."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc or "")
    text = text.replace("``", "")
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    # study.cli's parser: a bad flag is one line and exit 2 under cli_main, not the usage text
    return ArgumentParser(
        prog=prog,
        description=text,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_study_args(parser: argparse.ArgumentParser, *, csv_columns: str | None = None) -> None:
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help=f"study database, any SQLAlchemy URL Optuna accepts (default {DEFAULT_STORAGE})",
    )
    parser.add_argument(
        "--study-name",
        default=None,
        help="study to read (default: the storage's only study, else its most recently run "
        "one, named on stderr)",
    )
    if csv_columns is not None:
        parser.add_argument(
            "--csv",
            default=None,
            metavar="PATH",
            help=f"read a CSV file with columns {csv_columns} instead of a study",
        )


def add_budget_args(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help="training budget in seconds (default: the budget the study's trials ran with)",
    )
    parser.add_argument(
        "--ratio",
        type=float,
        default=20.0,
        help="tokens per parameter at the crossover (default 20, Chinchilla's heuristic)",
    )
    if device:
        add_device_arg(parser)


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default=None,
        metavar="NAME",
        help="only trials from this device (its kind, e.g. cpu, or its full name)",
    )


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
