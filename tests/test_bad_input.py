"""Bad input to ``python -m study.run`` (and the analysis commands): one clear line on stderr,
exit status 2, no traceback, and the database untouched.

Every case runs twice: with no database yet (no file may appear) and against a database that
already holds the study (its folder must stay byte for byte the same: no journal left behind,
no row written). ``main`` runs in this process, which is what ``python -m`` runs; two cases also
go through a real subprocess.
"""

from __future__ import annotations

import lzma
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
import torch
from studyrun import DATA, REPO, tmpfs, write_sweep

from study.result import TrainResult, trial_attrs
from study.storage import schema, store

FOLDER = "store"  # the database's own folder, compared before and after


def _build_study_db(path: Path) -> None:
    """A study named tiny (budget 1 s) holding one complete trial with its harness rows."""
    url = f"sqlite:///{path}"
    storage = store.open_storage(url)
    study = optuna.create_study(storage=storage, study_name="tiny")
    study.set_user_attr("budget", 1.0)
    study.set_user_attr("sweep", "tiny")
    trial = study.ask()
    d_model = trial.suggest_categorical("d_model", [32, 48])
    config = {
        "model": {
            "arch": "gpt",
            "n_layer": 1,
            "d_model": d_model,
            "n_head": 2,
            "pos": "learned",
            "mlp": "swiglu",
        },
        "lr": 1e-3,
        "budget": 1.0,
        "seed": 0,
    }
    result = TrainResult(
        config=config,
        val_loss=5.0,
        val_ppl=148.4,
        val_bpb=3.5,
        params=31_000,
        params_nonembedding=15_000,
        flops_per_token=190_000,
        tokens_seen=10_000,
        tokens_per_second=10_000.0,
        train_seconds=1.0,
        steps=10,
        epochs=0.01,
        batch_size=16,
        device="cpu",
        device_name="cpu",
        versions={"python": "3"},
        sample="Once upon a time",
        curve=[{"elapsed_s": 1.0, "tokens": 10_000, "train_loss": 5.1, "val_loss": 5.0}],
    )
    store.write_trial_rows(
        storage.engine,
        trial_id=trial._trial_id,
        study_name="tiny",
        trial_number=trial.number,
        result=result,
    )
    for key, value in trial_attrs(result).items():
        trial.set_user_attr(key, value)
    study.tell(trial, result.val_ppl)
    storage.engine.dispose()


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("study") / "study.db"
    _build_study_db(path)
    return path


@pytest.fixture(params=["no database", "existing study"])
def db(request: pytest.FixtureRequest, tmp_path: Path, study_db: Path) -> Path:
    folder = tmp_path / FOLDER
    folder.mkdir()
    path = folder / "study.db"
    if request.param == "existing study":
        shutil.copy(study_db, path)
    return path


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def refused(
    main: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> str:
    """Run ``main(argv)``: it must exit 2 with one ``error:`` line on stderr; returns it."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def run_main(argv: list[str]) -> None:
    from study.run import main

    main(argv)


# ------------------------------------------------------------------------------- the inputs


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _truncated_xz(tmp: Path) -> Path:
    """The real corpus cut short: a valid xz header, then the stream ends mid-block."""
    path = tmp / "corrupt" / "train.txt.xz"
    path.parent.mkdir()
    with open(DATA / "train.txt.xz", "rb") as f:
        path.write_bytes(f.read(64 * 1024))
    with pytest.raises(EOFError), lzma.open(path) as f:
        f.read()  # the file really is corrupt
    return path


def _corrupt_parquet(tmp: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp / "stories.parquet"
    pq.write_table(pa.table({"text": [f"Story {i}." for i in range(200)]}), path)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))  # footer and half the pages gone
    return path


def _sweep(tmp: Path, name: str, body: str) -> Path:
    return _write(tmp / f"{name}.py", "from study.config import ModelConfig, TrainConfig\n" + body)


# (id, extra argv built from the test's tmp folder, what the error line must say)
CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("missing data", lambda t: ["--data", str(t / "nowhere")], "data path does not exist"),
    ("empty data", lambda t: ["--data", str(_write(t / "empty.txt", ""))], "empty corpus"),
    ("corrupt xz", lambda t: ["--data", str(_truncated_xz(t))], "train.txt.xz: truncated"),
    (
        "corrupt parquet",
        lambda t: ["--data", str(_corrupt_parquet(t))],
        "cannot read " + "{tmp}/stories.parquet",
    ),
    ("unknown sweep", lambda t: ["--sweep", "no_such_sweep"], "unknown sweep 'no_such_sweep'"),
    ("missing sweep file", lambda t: ["--sweep", str(t / "missing.py")], "sweep file not found"),
    (
        "sweep without suggest",
        lambda t: ["--sweep", str(_sweep(t, "empty", "x = 1\n"))],
        "does not define a function suggest",
    ),
    (
        "sweep that fails to import",
        lambda t: ["--sweep", str(_sweep(t, "broken", "1 / 0\n"))],
        "failed to load: ZeroDivisionError: division by zero",
    ),
    (
        "sweep that raises",
        lambda t: [
            "--sweep",
            str(_sweep(t, "raises", "def suggest(trial):\n    raise KeyError('width')\n")),
        ],
        "suggest failed: KeyError: 'width'",
    ),
    (
        "sweep that exits on import",
        lambda t: ["--sweep", str(_sweep(t, "exits", "import sys\nsys.exit(3)\n"))],
        "exits.py failed to load: it called sys.exit(3)",
    ),
    (
        "sweep whose suggest exits",
        lambda t: [
            "--sweep",
            str(_sweep(t, "quits", "import sys\ndef suggest(trial):\n    sys.exit(3)\n")),
        ],
        "sweep quits: suggest failed: it called sys.exit(3)",
    ),
    (
        "negative learning rate",
        lambda t: [
            "--sweep",
            str(_sweep(t, "neg_lr", "def suggest(trial):\n    return TrainConfig(lr=-1e-3)\n")),
        ],
        "lr must be a positive finite number, got -0.001",
    ),
    (
        "zero layers",
        lambda t: [
            "--sweep",
            str(
                _sweep(
                    t,
                    "no_layers",
                    "def suggest(trial):\n    return TrainConfig(model=ModelConfig("
                    "n_layer=trial.suggest_int('n_layer', 0, 0)))\n",
                )
            ),
        ],
        "n_layer must be an integer >= 1, got 0",
    ),
    ("unknown device", lambda t: ["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ("zero trials", lambda t: ["--trials", "0"], "--trials must be at least 1"),
    ("zero workers", lambda t: ["--workers", "0"], "--workers must be at least 1"),
]
if not torch.cuda.is_available():
    CASES.append(
        (
            "absent cuda",
            lambda t: ["--device", "cuda"],
            "device 'cuda' was asked for but no CUDA device is present",
        )
    )


@pytest.mark.parametrize(("extra", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_study_run_refuses_bad_input_untouched(
    extra: Callable[[Path], list[str]],
    message: str,
    db: Path,
    tmp_path: Path,
    cache_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sweep = write_sweep(tmp_path)
    before = folder_bytes(db.parent)
    argv = [
        "--storage",
        f"sqlite:///{db}",
        "--study-name",
        "tiny",
        "--sweep",
        str(sweep),
        "--data",
        str(DATA),
        "--budget",
        "1",
        "--device",
        "cpu",
        "--cache-dir",
        str(cache_dir),
        *extra(tmp_path),
    ]
    err = refused(run_main, argv, capsys)
    assert message.format(tmp=tmp_path) in err
    assert folder_bytes(db.parent) == before


def test_storage_that_cannot_be_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--data", str(DATA), "--budget", "1", "--device", "cpu"]
    assert "cannot open storage" in refused(
        run_main,
        ["--storage", f"sqlite:///{tmp_path / 'no-such-folder' / 'study.db'}", *base],
        capsys,
    )
    assert "cannot parse storage URL" in refused(
        run_main, ["--storage", "not a url", *base], capsys
    )
    assert "cannot open storage" in refused(
        run_main, ["--storage", "postgresql+psycopg2://nobody@127.0.0.1:1/none", *base], capsys
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_file_that_is_not_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("these are notes, not a database\n" * 100)
    before = folder_bytes(tmp_path)
    argv = ["--storage", f"sqlite:///{notes}", "--data", str(DATA), "--budget", "1"]
    assert "cannot open storage" in refused(run_main, argv, capsys)
    for module in ("frontier", "crossover", "report"):
        main = __import__(f"analysis.{module}", fromlist=["main"]).main
        assert "not an SQLite database" in refused(
            main,
            [
                "--storage",
                f"sqlite:///{notes}",
                *(["--out", str(tmp_path / "r.html")] if module == "report" else []),
            ],
            capsys,
        )
    assert folder_bytes(tmp_path) == before


def _newer(study_db: Path, folder: Path) -> Path:
    path = folder / "study.db"
    shutil.copy(study_db, path)
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == "schema_version")
            .values(value=str(schema.SCHEMA_VERSION + 1))
        )
    engine.dispose()
    return path


def test_database_of_a_newer_schema_is_refused_by_run_and_analysis(
    study_db: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / FOLDER
    folder.mkdir()
    path = _newer(study_db, folder)
    url = f"sqlite:///{path}"
    before = folder_bytes(folder)
    err = refused(
        run_main,
        [
            "--storage",
            url,
            "--sweep",
            str(write_sweep(tmp_path)),
            "--data",
            str(DATA),
            "--budget",
            "1",
            "--device",
            "cpu",
            "--cache-dir",
            str(cache_dir),
        ],
        capsys,
    )
    assert (
        f"was written by a newer version of this harness (schema "
        f"{schema.SCHEMA_VERSION + 1}, this one reads {schema.SCHEMA_VERSION})" in err
    )
    for module in ("frontier", "crossover", "scaling_law", "report"):
        main = __import__(f"analysis.{module}", fromlist=["main"]).main
        extra = ["--out", str(tmp_path / "r.html")] if module == "report" else []
        assert "was written by a newer version of this harness" in refused(
            main, ["--storage", url, *extra], capsys
        )
    assert folder_bytes(folder) == before
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_existing_study_that_does_not_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    optuna.create_study(storage=url, study_name="default", direction="maximize")
    other = optuna.create_study(storage=url, study_name="other", direction="minimize")
    other.set_user_attr("budget", 300.0)
    before = folder_bytes(tmp_path)
    argv = ["--storage", url, "--data", str(DATA), "--budget", "1"]
    assert "maximize" in refused(run_main, argv, capsys).lower()
    assert "budget (--budget, seconds): 300, this run has 1;" in refused(
        run_main, [*argv, "--study-name", "other"], capsys
    )
    assert folder_bytes(tmp_path) == before


@pytest.mark.parametrize("case", ["corrupt xz", "newer schema"])
@pytest.mark.slow
def test_a_real_process_prints_one_line_and_exits_2(
    case: str, study_db: Path, tmp_path: Path, cache_dir: Path
) -> None:
    folder = tmp_path / FOLDER
    folder.mkdir()
    if case == "newer schema":
        db, data = _newer(study_db, folder), DATA
    else:
        db, data = folder / "study.db", _truncated_xz(tmp_path)
    before = folder_bytes(folder)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.run",
            "--storage",
            f"sqlite:///{db}",
            "--sweep",
            str(write_sweep(tmp_path)),
            "--data",
            str(data),
            "--budget",
            "1",
            "--device",
            "cpu",
            "--cache-dir",
            str(cache_dir),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert folder_bytes(folder) == before


def test_study_db_fixture_is_a_real_study(study_db: Path, tmp_path: Path) -> None:
    """The database the cases above leave untouched holds a readable study with its rows."""
    copy = tmp_path / "study.db"
    shutil.copy(study_db, copy)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT COUNT(*) FROM harness_curve").fetchone() == (1,)
        assert conn.execute("SELECT COUNT(*) FROM harness_sample").fetchone() == (1,)
    trial = optuna.load_study(study_name="tiny", storage=f"sqlite:///{copy}").best_trial
    assert trial.user_attrs["val_ppl"] == trial.value


def test_a_read_only_database_is_refused_even_when_complete(
    study_db: Path, tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """study.run on a read-only study.db (its study complete: nothing to train, but a run
    records itself): one line, exit 2, no retries (issue 18 #8); so in a read-only folder."""
    folder = tmp_path / FOLDER
    folder.mkdir()
    path = folder / "study.db"
    shutil.copy(study_db, path)
    argv = [
        "--storage",
        f"sqlite:///{path}",
        "--sweep",
        str(write_sweep(tmp_path)),
        "--study-name",
        "tiny",
        "--trials",
        "1",
        "--data",
        str(DATA),
        "--budget",
        "1",
        "--device",
        "cpu",
        "--cache-dir",
        str(cache_dir),
    ]
    path.chmod(0o444)
    before = folder_bytes(folder)
    assert "study.db is read-only; a study run records itself" in refused(run_main, argv, capsys)
    path.chmod(0o644)
    folder.chmod(0o555)
    try:
        assert "is in a read-only folder" in refused(run_main, argv, capsys)
    finally:
        folder.chmod(0o755)
    assert folder_bytes(folder) == before


@pytest.mark.slow
def test_a_database_on_a_read_only_file_system(
    study_db: Path, tmp_path: Path, cache_dir: Path
) -> None:
    """The same on a file system mounted read-only (a real process; root may write a file of
    mode 0444, not one on a read-only mount)."""
    with tmpfs(tmp_path / "ro") as mount:
        shutil.copy(study_db, mount / "study.db")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "study.run",
                "--storage",
                f"sqlite:///{mount / 'study.db'}",
                "--sweep",
                str(write_sweep(tmp_path)),
                "--study-name",
                "tiny",
                "--trials",
                "1",
                "--data",
                str(DATA),
                "--budget",
                "1",
                "--device",
                "cpu",
                "--cache-dir",
                str(cache_dir),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr == f"error: storage sqlite:///{mount / 'study.db'} is on a read-only "
        f"file system; a study run records itself in its database (copy it "
        f"somewhere writable to go on)\n"
    )


def test_another_applications_database_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another application's SQLite file is not given Optuna's tables; one whose own table is
    named ``studies`` is refused by the study and by the analysis (issue 18 #10)."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    before = folder_bytes(tmp_path)
    argv = [
        "--storage",
        f"sqlite:///{path}",
        "--data",
        str(DATA),
        "--budget",
        "1",
        "--device",
        "cpu",
    ]
    assert "holds another application's tables (customers), no study" in refused(
        run_main, argv, capsys
    )
    assert folder_bytes(tmp_path) == before
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, title TEXT)")
    conn.close()
    before = folder_bytes(tmp_path)
    assert "a table named studies that is not Optuna's" in refused(run_main, argv, capsys)
    from analysis.report import main as report_main

    assert "holds no Optuna study" in refused(
        report_main, ["--storage", f"sqlite:///{path}", "--out", str(tmp_path / "r.html")], capsys
    )
    assert folder_bytes(tmp_path) == before
