"""``analysis.output``: an output path is checked before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.output import FIGURE_FORMATS, check_output
from study.errors import UsageError


def test_check_output_refuses_what_cannot_be_written(tmp_path: Path) -> None:
    assert check_output(None, what="--json") is None
    assert check_output(tmp_path / "fig.SVG", what="--plot", suffixes=FIGURE_FORMATS) == (
        tmp_path / "fig.SVG"
    )
    with pytest.raises(UsageError, match=f"--out path {tmp_path} is a folder, not a file"):
        check_output(tmp_path, what="--out")
    with pytest.raises(UsageError, match="--json folder .*missing does not exist"):
        check_output(tmp_path / "missing" / "x.json", what="--json")
    with pytest.raises(
        UsageError,
        match=r"--plot path .*fig\.txt must end in one of: "
        r"\.png, \.svg, \.pdf",
    ):
        check_output(tmp_path / "fig.txt", what="--plot", suffixes=FIGURE_FORMATS)
    assert list(tmp_path.iterdir()) == []
