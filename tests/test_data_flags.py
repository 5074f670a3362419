"""``--max-stories`` on study.train and study.run: auto resolves once, before any trial."""

from __future__ import annotations

from pathlib import Path

import pytest
from datastories import make_stories, write_text

from study import run, train
from study.config import TrainConfig
from study.errors import UsageError
from study.orchestra import runner


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir()
    write_text(tmp_path / "d" / "train.txt", make_stories(120))
    write_text(tmp_path / "d" / "valid.txt", make_stories(6, seed=2))
    return tmp_path / "d"


def test_train_resolves_auto_at_startup(folder: Path, tmp_path: Path) -> None:
    parser = train.build_parser()
    args = parser.parse_args(
        [
            "--data",
            str(folder),
            "--device",
            "cuda",
            "--budget",
            "60",
            "--cache-dir",
            str(tmp_path / "k"),
        ]
    )
    assert train.config_from_args(args).max_stories == 120  # all the corpus holds
    args = parser.parse_args(["--data", str(folder), "--max-stories", "7"])
    assert train.config_from_args(args).max_stories == 7
    with pytest.raises(UsageError, match="--max-stories: expected auto or a positive integer"):
        parser.parse_args(["--max-stories", "0"])
    assert TrainConfig().max_stories == "auto"
    with pytest.raises(UsageError, match="max_stories"):
        TrainConfig.from_dict({"max_stories": "most"})


def test_run_flag_defaults_to_auto() -> None:
    parser = run.build_parser()
    assert parser.parse_args([]).max_stories == "auto"
    assert parser.parse_args(["--max-stories", "5000"]).max_stories == 5000
    with pytest.raises(UsageError, match="got 'lots'"):
        parser.parse_args(["--max-stories", "lots"])


def test_a_study_resolves_once_and_keeps_its_number(folder: Path, tmp_path: Path) -> None:
    config = TrainConfig(data=str(folder), device="cuda", budget=60.0)
    cache = str(tmp_path / "k")
    assert runner.prepare_tokens(config, cache_dir=cache, max_stories="auto", stored=None) == 120
    # Resumed: the stored number wins over a fresh estimate (which a new device could change).
    assert runner.prepare_tokens(config, cache_dir=cache, max_stories="auto", stored=40) == 40
    assert runner.prepare_tokens(config, cache_dir=cache, max_stories=40, stored=40) == 40
    with pytest.raises(UsageError, match="run with --max-stories 40"):
        runner.prepare_tokens(config, cache_dir=cache, max_stories=50, stored=40)
    # A sweep that sets its own number keeps it unless the flag says otherwise.
    own = config.replace(max_stories=30)
    assert runner.prepare_tokens(own, cache_dir=cache, max_stories="auto", stored=None) == 30
    assert runner.prepare_tokens(own, cache_dir=cache, max_stories=20, stored=None) == 20
