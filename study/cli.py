"""Shared command-line plumbing: an argparse parser whose errors are one line and exit 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from study.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """Argument errors raise UsageError (one line, exit 2 under ``cli_main``), not usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")
