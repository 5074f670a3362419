"""A fit's own error (FitError, a ValueError) is not the CLI's UsageError, and an analysis command
turns it into one line on stderr and exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis.args import analysis_main
from analysis.fits.core import fit_throughput
from analysis.fits.errors import FitError
from analysis.fits.loss_law import fit_loss_law
from study.errors import UsageError


def test_fits_raise_their_own_value_error() -> None:
    assert issubclass(FitError, ValueError) and not issubclass(FitError, UsageError)
    with pytest.raises(FitError, match="at least 5 points"):
        fit_loss_law(np.array([1e5, 1e6]), np.array([1e8, 1e9]), np.array([3.0, 2.5]))
    with pytest.raises(FitError, match="two distinct"):
        fit_throughput(np.array([1e6, 1e6]), np.array([1e5, 1e5]))


def test_a_command_prints_a_fit_error_on_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from analysis.scaling_law import main

    points = tmp_path / "points.csv"
    points.write_text("params,tokens,loss\n1e5,1e8,3.0\n1e6,1e9,2.5\n3e6,3e9,2.2\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--csv", str(points)])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "at least 5 points" in err


def test_analysis_main_leaves_other_errors_alone() -> None:
    @analysis_main
    def broken() -> None:
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        broken()
