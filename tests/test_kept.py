"""A real study keeps its best model; study.generate and study.evaluate use it."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import optuna
import pytest
from studyrun import DATA, REPO, run, study_args, write_sweep


def _cli(module: str, *args: str, cache_dir: Path) -> tuple[int, str, str]:
    proc = run([sys.executable, "-m", module, *args, "--cache-dir", str(cache_dir)])
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.slow
def test_a_study_keeps_its_best_model_to_generate_from_and_score(
    tmp_path: Path, cache_dir: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    first = run(study_args(url, sweep, cache_dir, "--trials", "2", "--keep", "best"))
    assert first.returncode == 0, first.stderr
    trials = optuna.load_study(study_name="tiny", storage=url).get_trials()
    best = min(trials, key=lambda t: float(t.value or 0.0))
    folder = tmp_path / "study.checkpoints" / "tiny"
    # --keep best: one checkpoint (weights + JSON) and the policy's note, whatever ran.
    assert sorted(p.name for p in folder.iterdir()) == [
        "keep.json",
        f"trial-{best.number:05d}.json",
        f"trial-{best.number:05d}.safetensors",
    ]
    assert all("checkpoint" in t.user_attrs for t in trials)
    assert Path(best.user_attrs["checkpoint"]) == folder / f"trial-{best.number:05d}.safetensors"

    common = ["--storage", url, "--study-name", "tiny"]
    gen = ["--prompt", "Once upon a time", "--tokens", "20", "--seed", "3"]
    code, text1, err = _cli("study.generate", *common, *gen, cache_dir=cache_dir)
    assert code == 0, err
    assert text1.startswith("Once upon a time") and f"trial {best.number}" in err
    code, text2, _ = _cli("study.generate", *common, *gen, cache_dir=cache_dir)
    assert text2 == text1
    code, text3, _ = _cli("study.generate", *common, *gen[:-1], "4", cache_dir=cache_dir)
    assert code == 0 and text3 != text1  # the seed matters, so the equality above can fail

    worse = max(trials, key=lambda t: float(t.value or 0.0)).number
    code, _, err = _cli("study.generate", *common, "--trial", str(worse), cache_dir=cache_dir)
    assert code == 2 and "no longer kept" in err and "Traceback" not in err

    code, out, err = _cli(
        "study.evaluate",
        *common,
        "--trial",
        str(best.number),
        "--data",
        str(DATA / "valid.txt.xz"),
        "--json",
        cache_dir=cache_dir,
    )
    assert code == 0, err
    scored = json.loads(out)
    assert math.isclose(scored["val_bpb"], best.user_attrs["val_bpb"], rel_tol=1e-5)
    assert scored["eval_tokens"] == best.user_attrs["eval_tokens"]
    assert REPO.is_dir()

    # Moved with its checkpoints (a clone, a database brought back from another machine): the
    # recorded path is gone, and the file of that name beside the moved database is found.
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (tmp_path / "study.db").rename(moved / "study.db")
    (tmp_path / "study.checkpoints").rename(moved / "study.checkpoints")
    assert not Path(best.user_attrs["checkpoint"]).exists()
    there = ["--storage", f"sqlite:///{moved / 'study.db'}", "--study-name", "tiny"]
    code, text4, err = _cli("study.generate", *there, *gen, cache_dir=cache_dir)
    assert code == 0 and text4 == text1, err


@pytest.mark.slow
def test_keep_none_keeps_nothing_and_generate_says_so(tmp_path: Path, cache_dir: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    proc = run(study_args(url, sweep, cache_dir, "--trials", "1", "--keep", "none"))
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "study.checkpoints").exists()
    code, _, err = _cli(
        "study.generate", "--storage", url, "--study-name", "tiny", cache_dir=cache_dir
    )
    assert code == 2 and "no kept model" in err


@pytest.mark.slow
def test_trials_config_prints_what_study_train_takes(tmp_path: Path) -> None:
    from study.config import TrainConfig

    url = f"sqlite:///{REPO / 'study.db'}"
    proc = run(
        [sys.executable, "-m", "analysis.trials", "--storage", url]
        + ["--study-name", "default-cpu-60s", "--config", "1"]
    )
    assert proc.returncode == 0, proc.stderr
    from study.kept.model import read_trials

    stored = read_trials(url, "default-cpu-60s")[1]  # read-only: the shipped file stays as is
    assert (
        TrainConfig.from_json(proc.stdout).to_dict()
        == TrainConfig.from_dict(stored.user_attrs["config"]).to_dict()
    )
    printed, model = json.loads(proc.stdout)["model"], stored.user_attrs["config"]["model"]
    assert {k: printed[k] for k in model} == model
    missing = run(
        [sys.executable, "-m", "analysis.trials", "--storage", url]
        + ["--study-name", "default-cpu-60s", "--config", "999"]
    )
    assert missing.returncode == 2 and "no trial 999" in missing.stderr
