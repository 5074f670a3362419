"""``analysis.report_html`` and ``python -m analysis.report``: one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path

import pytest
from analysis_db import make_study_db, url

from analysis import report


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
