"""The HTML report in a real browser: headless Chromium loads it, every image decodes to a
picture and every section is there.

The report is checked from outside: a wrapper page on a local HTTP server (same origin, so it
may read the frame) loads the report in an iframe, reads its images and headings, and writes
what it found into its *own* DOM, which ``chromium --dump-dom`` prints. The report itself runs
no script and is not changed.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from analysis_db import make_study_db, url

from analysis.page.report import run_report

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,  # starts a browser
    pytest.mark.skipif(
        BROWSER is None,
        reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)",
    ),
]

WRAPPER = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="report" src="%s" width="1200" height="900"></iframe>
<script>
// The window's load event waits for the frame's, which waits for the frame's images.
window.addEventListener("load", () => {
  const doc = document.getElementById("report").contentDocument;
  document.getElementById("result").textContent = JSON.stringify({
    images: Array.from(doc.images).map(img => img.complete ? img.naturalWidth : -1),
    sections: Array.from(doc.querySelectorAll("h2")).map(h => h.textContent),
    scripts: doc.scripts.length,
  });
});
</script></body></html>
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder served on 127.0.0.1 and its base URL."""
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def browse(root: Path, base: str, page: str, tmp_path: Path) -> dict[str, Any]:
    """What the wrapper page found in ``page`` (a file in ``root``), as Chromium rendered it."""
    (root / f"check-{page}").write_text(WRAPPER % page)
    assert BROWSER is not None
    done = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            f"{base}/check-{page}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.S)
    assert found is not None, done.stderr[-2000:]
    assert found.group(1) != "pending", "the report did not finish loading"
    return json.loads(
        found.group(1)
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", '"')
    )


def test_report_in_chromium_every_image_loads_and_every_section_is_there(
    served: tuple[Path, str], tmp_path: Path
) -> None:
    root, base = served
    db = make_study_db(tmp_path / "study.db")
    run_report(storage=url(db), out=root / "report.html", grid="coarse")
    seen = browse(root, base, "report.html", tmp_path)
    assert len(seen["images"]) == 10 and all(w > 100 for w in seen["images"]), seen["images"]
    assert seen["sections"] == [
        "Summary",
        "Frontier: held-out quality against size",
        "Throughput and the Chinchilla crossover",
        "Loss curves",
        "Loss law L(N, D) and its prediction",
        "Predictions checked on held-out sizes",
        "Positional scheme and MLP",
        "Samples from the best trials",
        "Epochs per trial",
        "Trials that did not complete",
        "Commands that made this page",
    ]
    assert seen["scripts"] == 0


def test_the_check_sees_a_broken_image(served: tuple[Path, str], tmp_path: Path) -> None:
    from analysis.figures.plots import new_figure
    from analysis.page.parts import figure

    good = figure(new_figure(width=3.0, height=2.0))
    broken = re.sub(r"base64,[^\"]+", "base64,iVBORw0KGgoAAAA", good)
    (root := served[0]).joinpath("broken.html").write_text(
        f"<!DOCTYPE html><html><body><h2>one</h2>{good}<h2>two</h2>{broken}</body></html>"
    )
    seen = browse(root, served[1], "broken.html", tmp_path)
    assert seen["sections"] == ["one", "two"]
    assert seen["images"][0] == 360 and seen["images"][1] == 0  # 3 in x 120 dpi; undecodable
