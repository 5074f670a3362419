"""Writing results: checked before any work starts, written whole or not at all."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from study.errors import UsageError

FIGURE_FORMATS = ("png", "svg", "pdf")


def check_output(path: str | os.PathLike[str] | None, *, what: str, suffixes: tuple[str, ...] = ()
                 ) -> Path | None:
    """Fail early, before any fitting, if ``path`` cannot be written.

    Raises:
        UsageError: the folder is missing, the path is a folder, or the suffix is not allowed.
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} path {p} is a folder, not a file")
    if not p.parent.is_dir():
        raise UsageError(f"{what} folder {p.parent} does not exist")
    if suffixes and p.suffix.lower().lstrip(".") not in suffixes:
        raise UsageError(f"{what} path {p} must end in one of: .{', .'.join(suffixes)}")
    return p


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write to a temporary file beside ``path``, then rename it over ``path``."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """JSON with non-finite floats written as null (strict JSON has no NaN or Infinity)."""
    atomic_write_text(path, json.dumps(_finite(payload), indent=2, sort_keys=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
