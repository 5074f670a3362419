"""``analysis.page.report`` and ``python -m analysis.report``: one self-contained HTML page."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
from analysis_db import make_study_db, url

from analysis import crossover, curves, frontier, predict, report, scaling_law, trials
from analysis.load import load_study
from analysis.page.commands import report_commands
from analysis.page.report import build_report, run_report
from analysis.views.scaling_law import COARSE_GRID
from study.errors import UsageError


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_study_db(tmp_path_factory.mktemp("study") / "study.db")


@pytest.mark.slow
def test_report_is_one_self_contained_page(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    report.main(["--storage", url(db), "--out", str(out), "--grid", "coarse"])
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # Frontier (ppl, bpb, by pos), throughput, a crossover per device, the curves, the loss
    # law, and a held-out ladder per device.
    assert page.count('src="data:image/png;base64,') == 10
    assert 'src="http' not in page and "<script" not in page
    for heading in (
        "Summary",
        "Frontier",
        "Throughput and the Chinchilla crossover",
        "Loss curves",
        "Loss law",
        "Predictions checked on held-out sizes",
        "Samples from the best trials",
        "Epochs per trial",
        "Trials that did not complete",
        "Commands that made this page",
    ):
        assert f"<h2>{heading}" in page, heading
    assert "said &lt;b&gt;hi&lt;/b&gt; &amp; left.</td>" in page  # samples, escaped, and cut
    assert "endoftext" not in page and "second story" not in page  # at the end-of-story marker
    summary = page[page.index("<h2>Summary") : page.index("<h3>Best trials")]
    assert (
        '<p class="note">Warning: 6 of 24 trials saw their training data more than 4 times (up to '
    ) in summary  # the GPU trials: billions of tokens of a 5.3M corpus
    held_out = page[page.index("<h2>Predictions checked") : page.index("<h2>Positional")]
    assert held_out.count("<h3>") == 2 and "<th>held-out N</th>" in held_out
    assert "12.2M" in held_out
    epochs = page[page.index("<h2>Epochs") : page.index("<h2>Trials that")]
    best = page[page.index("<h3>Best trials") : page.index("<h2>Frontier")]
    for part in (best, epochs):  # counts read 754k, 1.23M, not 7.54e+05
        assert "e+0" not in part and "1.06M" in part
    assert "diverged: loss became nan at step 12" in page
    assert "python -m analysis.report --storage" in page
    assert "loss-optimal N" in page


@pytest.mark.slow
def test_a_section_that_cannot_run_shows_why_and_the_page_is_still_built(db: Path) -> None:
    data = load_study(url(db))
    # Two small CPU trials and the failed one, no curves or samples: too little for most fits.
    small = dataclasses.replace(
        data,
        trials=data.trials.iloc[[0, 1, 24]],
        curves=data.curves.iloc[:0],
        samples=data.samples.iloc[:0],
    )
    page = build_report(
        small,
        budget=None,
        ratio=20.0,
        grid=COARSE_GRID,
        top=5,
        commands=["python -m analysis.report"],
    )
    notes = re.findall(r'<p class="note">(.*?)</p>', page)
    assert any(n.startswith("no fit for cpu: a throughput fit needs sizes spanning") for n in notes)
    assert "the loss law has 5 parameters and needs at least 5 points, got 2" in notes
    assert "the study stored no samples (table harness_sample)" in notes
    assert any("stored no loss curves for its complete trials" in n for n in notes)
    assert any(n.startswith("no held-out check: ") for n in notes)  # why: predict's words
    assert page.count("<h2>") == 11 and page.rstrip().endswith("</html>")
    assert page.count('src="data:image/png;base64,') == 3  # the frontiers only


def test_report_commands_are_accepted_by_each_command(tmp_path: Path) -> None:
    commands = report_commands(
        storage="sqlite:///s.db",
        study_name="s",
        budget=60.0,
        ratio=10.0,
        out="r.html",
        devices=["cpu", "NVIDIA H100"],
    )
    parsers = {
        "analysis.report": report.build_parser(),
        "analysis.frontier": frontier.build_parser(),
        "analysis.crossover": crossover.build_parser(),
        "analysis.scaling_law": scaling_law.build_parser(),
        "analysis.curves": curves.build_parser(),
        "analysis.predict": predict.build_parser(),
        "analysis.trials": trials.build_parser(),
    }
    modules = []
    for command in commands:
        python, dash_m, module, *args = shlex.split(command)
        assert (python, dash_m) == ("python", "-m")
        parsed = parsers[module].parse_args(args)
        assert (parsed.storage, parsed.study_name) == ("sqlite:///s.db", "s")
        if module not in ("analysis.curves", "analysis.trials"):
            assert parsed.budget == 60.0
        if module not in ("analysis.curves", "analysis.trials", "analysis.predict"):
            assert parsed.ratio == 10.0
        modules.append(module)
    assert modules == [
        "analysis.report",
        "analysis.frontier",
        "analysis.frontier",
        "analysis.crossover",
        "analysis.crossover",
        "analysis.scaling_law",
        "analysis.curves",
        "analysis.predict",
        "analysis.trials",
    ]
    assert "--device 'NVIDIA H100'" in commands[4]
    default = report_commands(
        storage="sqlite:///s.db", study_name="s", budget=None, ratio=20.0, out="r.html"
    )
    assert not any("--budget" in c or "--ratio" in c for c in default)


def test_report_refuses_bad_options_before_reading_the_study(tmp_path: Path) -> None:
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    out = tmp_path / "r.html"
    for options, message in (
        ({"top": -1}, "--top must be >= 0, got -1"),
        ({"grid": "fine"}, "--grid must be one of chinchilla, coarse"),
        ({"budget": 0.0}, "--budget must be a positive number"),
        ({"out": tmp_path / "r.txt"}, "must end in one of: .html, .htm"),
    ):
        with pytest.raises(UsageError, match=message):
            run_report(**{"storage": missing, "out": out, **options})  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
