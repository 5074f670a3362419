"""The bundled sample (``--data sample``) and the fallback to it when the hub cannot be reached."""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from datastories import read_splits

from study import train
from study.data import corpus, online, sample, tokens
from study.errors import UsageError

# sha256 of the bundled files as study/sample/SOURCES.md gives them: the content stays verbatim.
SHA256 = {
    "train.txt.xz": "5246385ce28f20409fa8e8aeb9abacafb5a8d9d7257fbda8366a8c6708b4da02",
    "valid.txt.xz": "2cbe33c9a132a1ccfc97e983887266391744780bd0a172da414b393898562927",
}


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """The hub endpoint on a closed local port, no offline mode, an empty hub cache, and no
    decision remembered from an earlier test."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for var in online.OFFLINE_VARS:  # set first, so the undo removes what go_offline sets
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(tokens, "_CHOICES", {})
    return endpoint


def test_sample_is_the_verbatim_bundled_corpus() -> None:
    folder = sample.sample_dir()
    assert folder == Path(sample.__file__).resolve().parents[1] / "sample"
    for name, digest in SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert "CDLA-Sharing-1.0" in (folder / "README.md").read_text()
    found = corpus.find_local_corpus("sample")
    assert [p.name for p in found.train_files] == ["train.txt.xz"]
    assert [p.name for p in found.valid_files] == ["valid.txt.xz"]
    train_stories, valid = read_splits(found, max_stories=3)
    assert len(train_stories) == 3 and len(valid) == 814  # SOURCES.md: 814 held-out stories
    assert all(s[0].isupper() or s[0] in "\"'“" for s in train_stories + valid)


def test_sample_matches_the_shared_corpus_fingerprint(tinystories: Path) -> None:
    if tinystories == corpus.find_local_corpus("sample").train_files[0].parent:
        pytest.skip("no ../shared corpus to compare the bundled sample with")
    # Same bytes in the same roles: the token cache built for one serves the other.
    shared = corpus.find_local_corpus(str(tinystories))
    assert corpus.find_local_corpus("sample").fingerprint() == shared.fingerprint()


def test_a_package_without_its_data_files_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "train.txt.xz").write_bytes(b"")
    monkeypatch.setattr(sample, "files", lambda package: tmp_path)
    with pytest.raises(UsageError, match=r"bundled sample is missing valid\.txt\.xz in .*--data"):
        corpus.find_local_corpus("sample")


def test_unreachable_hub_falls_back_to_the_sample_with_one_line(
    no_hub: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = tokens.open_source(None)
    assert isinstance(source, corpus.LocalCorpus) and source.given == "sample"
    assert tokens.resolve_data(None) == "sample"  # decided once: no second probe, no second line
    assert tokens.resolve_data("some/path") == "some/path"
    out, err = capfd.readouterr()
    assert out.splitlines() == [
        f"the dataset hub ({no_hub}) cannot be reached: training on the bundled TinyStories "
        f"sample (choose a corpus with --data PATH, or --data sample to skip this check)"
    ]
    assert err == ""
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_offline_mode_uses_a_cached_dataset_and_else_the_sample(
    no_hub: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import datasets.config
    import huggingface_hub.constants

    modules = {
        huggingface_hub.constants: ("HF_HUB_OFFLINE",),
        datasets.config: ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"),
    }
    for module, names in modules.items():  # recorded, so the undo restores what go_offline sets
        for name in names:
            monkeypatch.setattr(module, name, getattr(module, name))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(online, "hub_reachable", _must_not_probe)
    choice = online.choose_corpus(None, dataset="owner/name")
    assert choice.data == "sample" and choice.note is not None
    assert choice.note.startswith("offline mode is set (HF_HUB_OFFLINE): training on the bundled")
    snapshot = tmp_path / "hf" / "datasets--owner--name" / "snapshots" / "abc" / "data"
    snapshot.mkdir(parents=True)
    (snapshot / "train.parquet").write_bytes(b"x")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(online, "hub_reachable", lambda **_: False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    choice = online.choose_corpus(None, dataset="owner/name")
    assert (choice.data, choice.offline) == (None, True)
    assert choice.note == (
        f"the dataset hub ({no_hub}) cannot be reached: reading owner/name "
        f"from the local cache ({tmp_path / 'hf'})"
    )
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # the children read the cache too
    assert all(getattr(m, name) is True for m, names in modules.items() for name in names)


def _must_not_probe(**_: object) -> bool:
    raise AssertionError("offline mode set: the hub must not be probed")


def test_given_data_and_a_local_dataset_folder_need_no_probe(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(online, "hub_reachable", _must_not_probe)
    assert online.choose_corpus("x.txt", dataset="owner/name") == online.CorpusChoice("x.txt")
    assert online.choose_corpus(None, dataset=str(tmp_path)) == online.CorpusChoice(None)


class _Answers404(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local server that answers every HEAD with 404: a hub that is there."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answers404)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_tells_an_answer_from_silence(
    monkeypatch: pytest.MonkeyPatch, http_server: str
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", http_server)
    assert online.hub_reachable(timeout=5.0)  # any HTTP status counts as an answer
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        assert not online.hub_reachable(timeout=0.5)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.slow
def test_an_https_answer_without_a_valid_certificate_is_not_the_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A transparent proxy answers for every address, but cannot show the hub's certificate.
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answers404)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"https://127.0.0.1:{server.server_address[1]}")
        assert not online.hub_reachable(timeout=5.0)
    finally:
        server.shutdown()
        server.server_close()


def test_hub_that_answers_but_fails_gives_one_line_and_exit_2(
    no_hub: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    import datasets
    from huggingface_hub.utils import are_progress_bars_disabled as hub_bars_off

    bars_before = (datasets.utils.are_progress_bars_disabled(), hub_bars_off())
    bars_during = []

    def failing_load(name: str, **_: object) -> object:
        bars_during.append((datasets.utils.are_progress_bars_disabled(), hub_bars_off()))
        # What the client does on its way to failing: log retries on its own loggers, warn.
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        logging.getLogger("datasets.load").warning("Using the latest cached version")
        warnings.warn("the hub client warns", UserWarning, stacklevel=1)
        raise ConnectionError(f"Couldn't reach '{name}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", failing_load)
    monkeypatch.setattr(online, "hub_reachable", lambda **_: True)
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # as the CLI's basicConfig would show them
    root.addHandler(handler)
    try:
        with pytest.raises(SystemExit) as exit_:
            train.main(["--budget", "5", "--device", "cpu", "--cache-dir", str(tmp_path / "k")])
    finally:
        root.removeHandler(handler)
    assert exit_.value.code == 2
    assert bars_during == [(True, True)]  # off while the client works, then as they were
    assert (datasets.utils.are_progress_bars_disabled(), hub_bars_off()) == bars_before
    out, err = capfd.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "error: cannot load dataset roneneldan/TinyStories [train]: Couldn't reach "
        "'roneneldan/TinyStories' on the Hub (LocalEntryNotFoundError) (choose another corpus "
        "with --data PATH, or --data sample for the bundled one)"
    ]


def test_train_startup_without_a_hub_reads_the_sample_quietly(
    no_hub: str, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = train.build_parser().parse_args(
        ["--budget", "300", "--device", "cuda", "--cache-dir", str(tmp_path / "k")]
    )
    # auto sizes the corpus actually read: the sample's 27,283 training stories (SOURCES.md).
    assert train.config_from_args(args).max_stories == 27_283
    out, err = capfd.readouterr()
    assert len(out.splitlines()) == 1 and "bundled TinyStories sample" in out
    assert err == ""
