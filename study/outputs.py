"""Output paths, checked before any work starts: the one place every command that writes a file
(``--json``, ``--csv``, ``--out``, ``--plot``, ``--events``, ``--checkpoint``, ``--checkpoint-dir``)
asks whether it may.

A path is refused, in one line, where its folder is missing or cannot be written, where its
suffix is not the kind's, or where it names an existing file this harness did not write (a
``.json`` that is not JSON, a ``.png`` that is no figure; anything that is not a regular file)
unless the command was given ``--force``. An existing output of the same kind is replaced, as a
re-run expects. The files themselves are written whole or not at all by ``study.fileio``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from study.errors import UsageError

FIGURE_FORMATS = ("png", "svg", "pdf")
REPORT_MARK = '<meta name="generator" content="five-minute-study analysis.report">'
READ_AT_MOST = 64 << 20  # bytes of an existing JSON file read to recognise it


@dataclass(frozen=True)
class Kind:
    """What a command writes: the suffixes it takes and how an earlier one is recognised."""

    suffixes: tuple[str, ...]
    called: str  # for messages: "is not <called> this harness wrote"
    ours: Callable[[Path], bool]


def _head(path: Path, size: int = 1 << 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _is_json(path: Path) -> bool:
    if path.stat().st_size > READ_AT_MOST:
        return False
    try:
        value = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(value, dict | list)


def _is_json_lines(path: Path) -> bool:
    first = _head(path).split(b"\n", 1)[0]
    try:
        return isinstance(json.loads(first), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _is_figure(path: Path) -> bool:
    head = _head(path, 4096)
    return head.startswith((b"\x89PNG\r\n\x1a\n", b"%PDF-")) or b"<svg" in head


def _is_trials_csv(path: Path) -> bool:
    return _head(path, 4096).startswith(b"number,")  # the first column of analysis.trials'


def _is_report(path: Path) -> bool:
    head = _head(path, 1 << 18)
    return REPORT_MARK.encode() in head or b"<h1>Five-minute study: " in head  # older pages


def _is_safetensors(path: Path) -> bool:
    head = _head(path, 9)
    return len(head) == 9 and head[8:9] == b"{"  # an 8-byte header length, then its JSON


KINDS = {
    "json": Kind(("json",), "JSON", _is_json),
    "jsonl": Kind(("jsonl",), "JSON lines", _is_json_lines),
    "figure": Kind(FIGURE_FORMATS, "a figure", _is_figure),
    "csv": Kind(("csv",), "a trials table", _is_trials_csv),
    "html": Kind(("html", "htm"), "a report", _is_report),
    "safetensors": Kind(("safetensors",), "weights", _is_safetensors),
}


def add_force_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing output file even where it is not one this harness wrote",
    )


def check_output(
    path: str | os.PathLike[str] | None,
    *,
    what: str,
    kind: str,
    force: bool = False,
    make_folder: bool = False,
) -> Path | None:
    """``path`` as a Path if this command may write it there (None for None), checked before
    any work starts. With ``make_folder`` a missing folder is fine where it can be made.

    Raises:
        UsageError: one line: the path is a folder, its suffix is not the kind's, its folder is
            missing or not writable, or it names an existing file that is not an output of this
            kind (unless ``force``).
    """
    if path is None:
        return None
    spec = KINDS[kind]
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{what} path {p} is a folder, not a file")
    if p.suffix.lower().lstrip(".") not in spec.suffixes:
        raise UsageError(f"{what} path {p} must end in one of: .{', .'.join(spec.suffixes)}")
    if make_folder and not p.parent.exists():
        check_output_dir(p.parent, what=f"{what}'s")
        return p
    _check_folder(p.parent, what=what)
    if not force and (p.exists() or p.is_symlink()) and not _replaceable(p, spec):
        raise UsageError(
            f"{what} path {p} exists and is not {spec.called} this harness wrote; give another "
            f"path, or --force to replace it"
        )
    return p


def check_output_dir(path: str | os.PathLike[str] | None, *, what: str) -> Path | None:
    """``path`` as a Path if this command may make and fill the folder (None for None): an
    existing folder that can be written, or a missing one whose nearest existing parent can.

    Raises:
        UsageError: one line: it is a file, or the folder (or its parent) cannot be written.
    """
    if path is None:
        return None
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{what} {p} is a file, not a folder")
    parent = p
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    _check_folder(parent, what=what)
    return p


def _check_folder(folder: Path, *, what: str) -> None:
    shown = folder if str(folder) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{what} folder {shown} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{what} folder {shown} is not writable")


def _replaceable(path: Path, spec: Kind) -> bool:
    """An empty regular file, or one of ``spec``'s kind: replacing it loses nothing of another's."""
    try:
        if not path.is_file():  # a FIFO, a device, a dangling or foreign link: never read it
            return False
        return path.stat().st_size == 0 or spec.ours(path)
    except OSError:
        return False
