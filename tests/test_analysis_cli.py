"""The analysis commands' entry points: bad input exits 2 with one line and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_db import digest, make_study_db, run_cli, url

pytestmark = pytest.mark.slow  # every test here starts processes or trains


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


BAD_INPUTS = {
    "missing_column": (
        "analysis.crossover",
        "--csv",
        "{tmp}/bad.csv",
        "--budget",
        "60",
        "--json",
        "{tmp}/out.json",
        "lacks column(s) tokens_per_second",
    ),
    "unknown_study": (
        "analysis.scaling_law",
        "--storage",
        "{db}",
        "--study-name",
        "nope",
        "--json",
        "{tmp}/out.json",
        "no study named 'nope'",
    ),
    "not_a_database": (
        "analysis.frontier",
        "--storage",
        "sqlite:///{tmp}/junk.db",
        "--plot",
        "{tmp}/f.png",
        "is not an SQLite database",
    ),
    "missing_database": (
        "analysis.report",
        "--storage",
        "sqlite:///{tmp}/missing.db",
        "--out",
        "{tmp}/r.html",
        "no study database",
    ),
    "csv_and_storage": (
        "analysis.crossover",
        "--csv",
        "{tmp}/bad.csv",
        "--storage",
        "{db}",
        "--budget",
        "1",
        "either --csv or --storage",
    ),
    "unknown_flag": ("analysis.report", "--storage", "{db}", "--bogus", "unrecognized arguments"),
    "bad_plot_suffix": (
        "analysis.crossover",
        "--storage",
        "{db}",
        "--device",
        "cpu",
        "--plot",
        "{tmp}/cross.txt",
        "must end in one of: .png, .svg, .pdf",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    case: str, db: Path, tmp_path: Path
) -> None:
    (tmp_path / "bad.csv").write_text("params,tok_per_s\n1e6,1e4\n2e6,6e3\n")
    (tmp_path / "junk.db").write_bytes(b"\x00garbage" * 100)
    module, *args, expect = BAD_INPUTS[case]
    args = [a.format(tmp=tmp_path, db=url(db)) for a in args]
    db_digest = digest(db)
    result = run_cli(module, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert expect in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "junk.db"]
    assert digest(db) == db_digest
