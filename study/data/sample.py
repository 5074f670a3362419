"""The bundled TinyStories sample, ``--data sample``: study/sample/{train,valid}.txt.xz.

Real TinyStories text (CDLA-Sharing-1.0; licence and provenance in study/sample/README.md and
SOURCES.md), shipped as package data so the harness trains on a machine with no route to the
dataset hub. The name ``sample`` always means this corpus; a local folder of that name is
reached as ``./sample``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from study.errors import UsageError

SAMPLE = "sample"
SAMPLE_FILES = ("train.txt.xz", "valid.txt.xz")


def sample_dir() -> Path:
    """The folder holding the sample's files, from an installed or an editable package.

    Raises:
        UsageError: the package was installed without its data files.
    """
    # files() gives the package folder on disk for a regular (not zipped) install or checkout.
    folder = Path(str(files("study").joinpath(SAMPLE)))
    missing = [name for name in SAMPLE_FILES if not (folder / name).is_file()]
    if missing:
        raise UsageError(
            f"the bundled sample is missing {', '.join(missing)} in {folder} (reinstall the "
            f"package with its data files, or pass --data PATH)"
        )
    return folder
