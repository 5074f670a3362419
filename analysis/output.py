"""Output paths of the analysis commands, checked before any work starts.

The files themselves are written whole or not at all by ``study.fileio``.
"""

from __future__ import annotations

import os
from pathlib import Path

from study.errors import UsageError

FIGURE_FORMATS = ("png", "svg", "pdf")


def check_output(
    path: str | os.PathLike[str] | None, *, what: str, suffixes: tuple[str, ...] = ()
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
