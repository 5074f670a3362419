"""The one exception type that means "the user asked for something we cannot do"."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class UsageError(Exception):
    """Bad input from the user: a CLI prints its message on one line and exits with status 2."""


def cli_main(fn: Callable[..., T]) -> Callable[..., T]:
    """Wrap a CLI ``main`` so a UsageError becomes one line on stderr and exit status 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper
