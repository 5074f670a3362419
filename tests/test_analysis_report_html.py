"""``analysis.report_html`` and ``python -m analysis.report``: one self-contained HTML page."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
from analysis_db import make_study_db, url

from analysis import crossover, frontier, report, scaling_law
from analysis.load import load_study
from analysis.report_html import build_report, report_commands, run_report
from analysis.scaling import COARSE_GRID
from study.errors import UsageError


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


def test_report_is_one_self_contained_page(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    report.main(["--storage", url(db), "--out", str(out), "--grid", "coarse"])
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Frontier (ppl, bpb, by pos), throughput, a crossover per device, the loss law.
    assert page.count('src="data:image/png;base64,') == 7
    assert "src=\"http" not in page and "<script" not in page
    for heading in ("Summary", "Frontier", "Throughput and the Chinchilla crossover",
                    "Loss law", "Samples from the best trials", "Epochs per trial",
                    "Trials that did not complete", "Commands that made this page"):
        assert f"<h2>{heading}" in page, heading
    assert "said &lt;b&gt;hi&lt;/b&gt; &amp; left." in page  # samples, escaped
    assert "diverged: loss became nan at step 12" in page
    assert "python -m analysis.report --storage" in page
    assert "loss-optimal N" in page


def test_a_section_that_cannot_run_shows_why_and_the_page_is_still_built(db: Path) -> None:
    data = load_study(url(db))
    # Two small CPU trials and the failed one, no curves or samples: too little for most fits.
    small = dataclasses.replace(data, trials=data.trials.iloc[[0, 1, 24]],
                                curves=data.curves.iloc[:0], samples=data.samples.iloc[:0])
    page = build_report(small, budget=None, ratio=20.0, grid=COARSE_GRID, top=5,
                        commands=["python -m analysis.report"])
    notes = re.findall(r'<p class="note">(.*?)</p>', page)
    assert any(n.startswith("no fit for cpu: a throughput fit needs sizes spanning") for n in notes)
    assert "the loss law has 5 parameters and needs at least 5 points, got 2" in notes
    assert "the study stored no samples (table harness_sample)" in notes
    assert page.count("<h2>") == 9 and page.rstrip().endswith("</html>")
    assert page.count('src="data:image/png;base64,') == 3  # the frontiers only


def test_report_commands_are_accepted_by_each_command(tmp_path: Path) -> None:
    commands = report_commands(storage="sqlite:///s.db", study_name="s", budget=60.0, ratio=10.0,
                               out="r.html", devices=["cpu", "NVIDIA H100"])
    parsers = {"analysis.report": report.build_parser(), "analysis.frontier":
               frontier.build_parser(), "analysis.crossover": crossover.build_parser(),
               "analysis.scaling_law": scaling_law.build_parser()}
    modules = []
    for command in commands:
        python, dash_m, module, *args = shlex.split(command)
        assert (python, dash_m) == ("python", "-m")
        parsed = parsers[module].parse_args(args)
        assert (parsed.storage, parsed.study_name, parsed.budget, parsed.ratio) == (
            "sqlite:///s.db", "s", 60.0, 10.0)
        modules.append(module)
    assert modules == ["analysis.report", "analysis.frontier", "analysis.frontier",
                       "analysis.crossover", "analysis.crossover", "analysis.scaling_law"]
    assert "--device 'NVIDIA H100'" in commands[4]
    default = report_commands(storage="sqlite:///s.db", study_name="s", budget=None,
                              ratio=20.0, out="r.html")
    assert not any("--budget" in c or "--ratio" in c for c in default)


def test_report_refuses_bad_options_before_reading_the_study(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    out = tmp_path / "r.html"
    for options, message in (({"top": -1}, "--top must be >= 0, got -1"),
                             ({"grid": "fine"}, "--grid must be one of chinchilla, coarse"),
                             ({"budget": 0.0}, "--budget must be a positive number"),
                             ({"out": tmp_path / "r.txt"}, "must end in one of: .html, .htm")):
        with pytest.raises(UsageError, match=message):
            run_report(**{"storage": missing, "out": out, **options})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
