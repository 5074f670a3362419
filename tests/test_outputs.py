"""``study.outputs``: every output path is checked before any work starts (issue 27 #7: an
unwritable path was found only after the training or the fit, and ``--json`` overwrote any file
whatever its suffix).

Each command family is run in-process on a storage that does not exist: a refusal of the
output path must come first (one line, exit 2, the file untouched), and a path it accepts
gets as far as the storage's own refusal.
"""

from __future__ import annotations

import importlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from studyrun import tmpfs
from test_bad_input import refused

from study.errors import UsageError
from study.outputs import FIGURE_FORMATS, REPORT_MARK, check_output, check_output_dir

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def test_check_output_refuses_what_cannot_be_written(tmp_path: Path) -> None:
    assert check_output(None, what="--json", kind="json") is None
    assert check_output(tmp_path / "fig.SVG", what="--plot", kind="figure") == tmp_path / "fig.SVG"
    with pytest.raises(UsageError, match=f"--out path {tmp_path} is a folder, not a file"):
        check_output(tmp_path, what="--out", kind="html")
    with pytest.raises(UsageError, match="--json folder .*missing does not exist"):
        check_output(tmp_path / "missing" / "x.json", what="--json", kind="json")
    with pytest.raises(UsageError, match=r"--plot path .*fig\.txt must end in one of: \.png, "):
        check_output(tmp_path / "fig.txt", what="--plot", kind="figure")
    with pytest.raises(UsageError, match=r"--json path .*result\.py must end in one of: \.json"):
        check_output(tmp_path / "result.py", what="--json", kind="json", force=True)
    assert FIGURE_FORMATS == ("png", "svg", "pdf")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kind", "name", "ours", "foreign"),
    [
        ("json", "r.json", b'{\n  "a": 1\n}\n', b"import os\n"),
        ("json", "r.json", b"[1, 2]", b'"just a string"'),
        ("jsonl", "e.jsonl", b'{"kind": "step"}\n{"kind"', b"step 1 loss 3\n"),
        ("figure", "f.png", PNG, b"notes\n"),
        ("figure", "f.svg", b'<?xml version="1.0"?>\n<svg xmlns="...">', b"<html>"),
        ("figure", "f.pdf", b"%PDF-1.4\n", b"PK\x03\x04"),
        ("csv", "t.csv", b"number,trial_id,state\n0,1,COMPLETE\n", b"name,salary\nx,1\n"),
        ("html", "r.html", f"<html><head>{REPORT_MARK}".encode(), b"<html>mine</html>"),
        ("safetensors", "m.safetensors", b"\x08\0\0\0\0\0\0\0{}", b"weights?"),
    ],
)
def test_an_existing_output_is_replaced_and_another_file_is_not(
    tmp_path: Path, kind: str, name: str, ours: bytes, foreign: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(ours)
    assert check_output(path, what="--x", kind=kind) == path
    path.write_bytes(b"")
    assert check_output(path, what="--x", kind=kind) == path  # empty: nothing to lose
    path.write_bytes(foreign)
    with pytest.raises(UsageError, match=f"--x path {path} exists and is not .* --force to"):
        check_output(path, what="--x", kind=kind)
    assert check_output(path, what="--x", kind=kind, force=True) == path
    assert path.read_bytes() == foreign  # checking writes nothing


def test_links_and_special_files_are_refused_without_force(tmp_path: Path) -> None:
    link = tmp_path / "zero.json"
    link.symlink_to("/dev/zero")  # never read: it would not end
    with pytest.raises(UsageError, match="exists and is not JSON this harness wrote"):
        check_output(link, what="--json", kind="json")
    dangling = tmp_path / "gone.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(UsageError, match="exists and is not a figure"):
        check_output(dangling, what="--plot", kind="figure")


def test_check_output_dir(tmp_path: Path) -> None:
    assert check_output_dir(None, what="--checkpoint-dir") is None
    assert check_output_dir(tmp_path / "a" / "b", what="--checkpoint-dir") == tmp_path / "a" / "b"
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="--checkpoint-dir .*file is a file, not a folder"):
        check_output_dir(tmp_path / "file", what="--checkpoint-dir")
    with pytest.raises(UsageError, match="folder .*file does not exist"):
        check_output_dir(tmp_path / "file" / "sub", what="--checkpoint-dir")


def _main(module: str) -> Callable[[list[str]], object]:
    return importlib.import_module(module).main  # type: ignore[no-any-return]


NO_STORAGE = "sqlite:///{folder}/absent/study.db"  # refused, but only once it is looked at

# (command, output flag, kind's suffix, something ours to replace, other flags)
ANALYSIS: list[tuple[str, str, str, bytes, list[str]]] = [
    ("analysis.scaling_law", "--json", ".json", b"{}", []),
    ("analysis.scaling_law", "--plot", ".png", PNG, []),
    ("analysis.crossover", "--json", ".json", b"{}", []),
    ("analysis.crossover", "--throughput-plot", ".svg", b"<svg>", []),
    ("analysis.predict", "--json", ".json", b"{}", []),
    ("analysis.compare", "--json", ".json", b"{}", []),
    ("analysis.frontier", "--plot", ".pdf", b"%PDF-1.7", []),
    ("analysis.curves", "--plot", ".png", PNG, []),
    ("analysis.trials", "--csv", ".csv", b"number,state\n", []),
    ("analysis.report", "--out", ".html", f"<head>{REPORT_MARK}".encode(), []),
]


@pytest.mark.parametrize(("module", "flag", "suffix", "ours", "extra"), ANALYSIS)
def test_analysis_commands_check_their_outputs_first(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    module: str,
    flag: str,
    suffix: str,
    ours: bytes,
    extra: list[str],
) -> None:
    main = _main(module)
    base = ["--storage", NO_STORAGE.format(folder=tmp_path), "--study-name", "s", *extra]
    notes = tmp_path / f"notes{suffix}"
    notes.write_bytes(b"my notes, not an output\n")
    err = refused(main, [*base, flag, str(notes)], capsys)
    assert f"{flag} path {notes} exists and is not" in err
    assert notes.read_bytes() == b"my notes, not an output\n"
    code = tmp_path / "analysis.py"
    code.write_text("print('hi')\n")
    assert "must end in one of" in refused(main, [*base, flag, str(code)], capsys)
    assert code.read_text() == "print('hi')\n"
    for path, more in ((notes, ["--force"]), (tmp_path / f"old{suffix}", [])):
        if not more:
            path.write_bytes(ours)
        err = refused(main, [*base, flag, str(path), *more], capsys)
        assert "absent" in err and "exists and is not" not in err  # on to the storage


def test_baseline_checks_its_json_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "baseline.json"
    notes.write_text("not json")
    argv = ["--data", str(tmp_path / "absent"), "--json", str(notes)]
    assert "exists and is not JSON" in refused(_main("analysis.baseline"), argv, capsys)
    assert notes.read_text() == "not json"


def test_train_checks_its_outputs_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = _main("study.train")
    base = ["--data", str(tmp_path / "absent"), "--budget", "1"]  # refused once it is read
    script = tmp_path / "train.py"
    script.write_text("x = 1\n")
    cases = [
        (["--json", str(script)], "--json path .*train.py must end in one of: .json"),
        (["--json", str(_text(tmp_path / "r.json"))], "--json path .* exists and is not JSON"),
        (["--events", str(_text(tmp_path / "e.jsonl"))], "--events path .* exists and is not"),
        (["--checkpoint", str(tmp_path / "m")], None),
        (["--checkpoint", str(tmp_path / "n")], "--checkpoint path .*n.json exists and is not"),
    ]
    _text(tmp_path / "n.json")
    for flags, message in cases:
        err = refused(main, [*base, *flags], capsys)
        if message is None:
            assert "absent" in err, err  # accepted: on to the corpus
        else:
            import re

            assert re.search(message, err), err
    assert script.read_text() == "x = 1\n" and not (tmp_path / "m.json").exists()
    err = refused(main, [*base, "--json", str(tmp_path / "r.json"), "--force"], capsys)
    assert "absent" in err


def _text(path: Path) -> Path:
    path.write_text("hello\n")
    return path


def test_run_checks_its_checkpoint_dir_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_bad_input import run_main

    blocker = _text(tmp_path / "weights")
    argv = ["--storage", f"sqlite:///{tmp_path / 'study.db'}", "--checkpoint-dir", str(blocker)]
    assert "--checkpoint-dir" in refused(run_main, [*argv, "--trials", "1"], capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights"]


def test_bench_checks_its_json_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for module, flags in (
        ("bench.__main__", ["--device", "cpu", "--sizes", "1M"]),
        ("bench.recipes", ["--sizes", "L3-d128"]),
    ):
        notes = _text(tmp_path / "bench.json")
        err = refused(_main(module), [*flags, "--json", str(notes)], capsys)
        assert "--json path" in err and "exists and is not JSON" in err
        assert notes.read_text() == "hello\n"
    fresh = tmp_path / "new" / "deeper" / "bench.json"  # python -m bench makes its folder
    assert check_output(fresh, what="--json", kind="json", make_folder=True) == fresh


@pytest.mark.slow  # mounts a read-only tmpfs
def test_an_unwritable_folder_is_refused_before_the_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with tmpfs(tmp_path / "ro") as folder:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        for module, flag, name in (
            ("analysis.frontier", "--plot", "f.png"),
            ("analysis.report", "--out", "r.html"),
            ("analysis.trials", "--csv", "t.csv"),
        ):
            argv = ["--storage", NO_STORAGE.format(folder=tmp_path), flag, str(folder / name)]
            err = refused(_main(module), argv, capsys)
            assert f"{flag} folder {folder} is not writable" in err
        with pytest.raises(UsageError, match="is not writable"):
            check_output_dir(folder / "weights", what="--checkpoint-dir")
        assert json.dumps(sorted(p.name for p in folder.iterdir())) == "[]"
