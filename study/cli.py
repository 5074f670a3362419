"""Shared command-line plumbing: an argparse parser whose errors are one line and exit 2."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from study.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """Argument errors raise UsageError (one line, exit 2 under ``cli_main``), not usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def write_json_atomic(path: Path | str, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` through a temporary file and a rename, so a reader never
    sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
