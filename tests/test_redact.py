"""One URL redactor for every form a secret takes in a storage URL, and the messages that show
one: no secret appears in any form, in the URL shown, an error line, or the commands printed."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse

import pytest
from studyrun import REPO

from study.errors import UsageError, cli_main
from study.orchestra.progress import summary
from study.redact import redact
from study.storage.store import safe_url

SECRET = "Hunter2zz"
FORMS = [SECRET, urllib.parse.quote(SECRET, safe=""), "Hunter%32zz", "Hunter%32%7a%7A"]
BASE = "postgresql+psycopg2://user@127.0.0.1:1/test"
URLS = [
    f"postgresql+psycopg2://user:{SECRET}@127.0.0.1:1/test",
    "postgresql+psycopg2://user:Hunter%32zz@127.0.0.1:1/test",
    *(
        f"{BASE}?{key}={value}"
        for key in ("password", "PASSWORD", "passwd", "pwd", "secret", "token", "sslpassword")
        for value in (SECRET, "Hunter%32zz")
    ),
    f"{BASE}?pass%77ord={SECRET}",  # the key percent-encoded
    f"{BASE}?sslmode=disable&password={SECRET}&connect_timeout=1",
    f"mysql+pymysql://root@127.0.0.1:1/test?charset=utf8mb4&passwd={SECRET}",
    f"not a url at all user:{SECRET}@host?token={SECRET}",
]


def _leaks(text: str) -> list[str]:
    decoded = urllib.parse.unquote(text)
    return [form for form in FORMS if form in text or form in decoded]


@pytest.mark.parametrize("url", URLS)
def test_no_form_of_a_secret_survives_the_redactor(url: str) -> None:
    assert _leaks(url)  # the case holds a secret to hide
    assert _leaks(safe_url(url)) == [] and _leaks(redact(f"error: cannot open {url}")) == []


def test_the_redactor_keeps_what_is_no_secret() -> None:
    url = f"{BASE}?sslmode=disable&password={SECRET}&connect_timeout=1"
    shown = safe_url(url)
    assert "sslmode=disable" in shown and "connect_timeout=1" in shown and "127.0.0.1:1" in shown
    assert safe_url("sqlite:////tmp/study.db") == "sqlite:////tmp/study.db"


def test_the_suggested_commands_and_errors_hide_the_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    for url in URLS:
        assert _leaks("\n".join(summary("tiny", url, [], target=1))) == []

        @cli_main
        def fails(url: str = url) -> int:
            raise UsageError(f"cannot open storage {url}: password={SECRET} refused")

        with pytest.raises(SystemExit):
            fails()
        assert _leaks(capsys.readouterr().err) == []


@pytest.mark.slow
@pytest.mark.parametrize("module", ["analysis.report", "analysis.trials", "study.merge"])
def test_commands_never_print_a_query_password(module: str, tmp_path: object) -> None:
    url = f"{BASE}?password={SECRET}&connect_timeout=1"
    args = (
        [url, f"sqlite:///{tmp_path}/dst.db"]
        if module == "study.merge"
        else [
            "--storage",
            url,
            "--study-name",
            "tiny",
            *(["--csv", f"{tmp_path}/t.csv"] if module == "analysis.trials" else []),
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert proc.returncode == 2, proc.stderr
    assert _leaks(proc.stdout + proc.stderr) == [], proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module", ["analysis.trials", "study.merge"])
def test_a_non_numeric_port_is_one_line_without_the_password(module: str, tmp_path: object) -> None:
    url = f"postgresql://user:{SECRET}@host:abc/db"
    args = (
        [url, f"sqlite:///{tmp_path}/dst.db"]
        if module == "study.merge"
        else [
            "--storage",
            url,
            "--study-name",
            "tiny",
            "--csv",
            f"{tmp_path}/t.csv",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "cannot parse storage URL" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and _leaks(proc.stderr) == []
