"""``study.orchestra.runner``: splitting devices and cores among workers, sampler seeds, refusing an
existing study whose trials would not compare."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import pytest
from studyrun import REPO, run, study_args, view, write_sweep

from study.errors import UsageError
from study.orchestra import comparability, launch, runner
from study.orchestra.comparability import check_terms
from study.storage.store import StorageState


def test_child_env_splits_devices_and_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    assert launch.child_env(0, 1, device="auto") == {}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert [launch.child_env(i, 3, device="cuda") for i in range(3)] == [
        {"CUDA_VISIBLE_DEVICES": "2"},
        {"CUDA_VISIBLE_DEVICES": "5"},
        {"CUDA_VISIBLE_DEVICES": "2"},
    ]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launch.os, "cpu_count", lambda: 16)
    assert launch.child_env(1, 4, device="auto") == {"OMP_NUM_THREADS": "4"}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert launch.child_env(1, 4, device="cpu") == {}


def test_sampler_seeds_differ_by_worker_and_resume() -> None:
    seeds = {launch.sampler_seed(0, before, i) for before in (0, 3) for i in range(2)}
    assert len(seeds) == 4 and launch.sampler_seed(0, 3, 1) == launch.sampler_seed(0, 3, 1)


def _state(directions: tuple[str, ...], attrs: dict[str, object]) -> StorageState:
    return StorageState(
        url="sqlite:///x.db",
        has_optuna=True,
        study_exists=True,
        directions=directions,
        study_attrs=attrs,
    )


def test_check_existing_refuses_what_would_not_compare() -> None:
    runner.check_existing(_state(("MINIMIZE",), {"budget": 60.0}), "s", budget=60)
    runner.check_existing(_state(("MINIMIZE",), {}), "s", budget=60)  # tagged by this run
    with pytest.raises(UsageError, match="optimises MAXIMIZE"):
        runner.check_existing(_state(("MAXIMIZE",), {}), "s", budget=60)
    with pytest.raises(UsageError, match=r"budget \(--budget, seconds\): 60, this run has 30;"):
        runner.check_existing(_state(("MINIMIZE",), {"budget": 60.0}), "s", budget=30)


def test_check_terms_names_what_differs_and_returns_what_is_missing() -> None:
    ours = {
        "budget": 60.0,
        "eval_tokens": 4096,
        "corpus": "a" * 64,
        "search_space": {"lr": "{x: 1}", "n_layer": "{y: 2}"},
    }
    assert check_terms({}, ours, study_name="s") == ours
    assert check_terms({"budget": 60, "eval_tokens": 4096}, ours, study_name="s") == {
        "corpus": "a" * 64,
        "search_space": ours["search_space"],
    }
    for stored, message in (
        ({"budget": 30.0}, r"another budget \(--budget, seconds\): 30, this run has 60;"),
        ({"eval_tokens": 1024}, "evaluation protocol .*: 1024, this run has 4096"),
        ({"corpus": "b" * 64}, f"corpus .*: {'b' * 12}, this run has {'a' * 12}"),
        (
            {"search_space": {"lr": "{x: 1}", "n_layer": "{y: 3}"}},
            r"search space .*: n_layer \{y: 3\}, this run has n_layer \{y: 2\}",
        ),
        ({"search_space": {"lr": "{x: 1}"}}, "n_layer absent, this run has n_layer"),
    ):
        with pytest.raises(UsageError, match=message):
            check_terms(stored, ours, study_name="s")


@pytest.mark.slow
def test_runs_that_would_not_compare_are_refused_under_the_lock(
    tmp_path: Path, cache_dir: Path
) -> None:
    """Two runs of different budgets started together on a new study: one runs, the other is
    refused with one line and exit 2 (issue 18 #5); so are a run on another corpus, of another
    sweep's search space, or of another evaluation protocol."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    procs = [
        subprocess.Popen(
            study_args(url, sweep, cache_dir, "--trials", "1", budget=b),
            cwd=REPO,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for b in (1.0, 2.0)
    ]
    outs = [p.communicate(timeout=300)[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    refused = outs[[p.returncode for p in procs].index(2)]
    assert refused.count("\n") == 1 and "was made with another budget" in refused, refused
    assert view(url, "tiny").by_state() == {"COMPLETE": 1}

    budget = next(b for b, p in zip((1.0, 2.0), procs, strict=True) if p.returncode == 0)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    stories = [f"Tom had {i} red balls. He gave one to Sue and she smiled." for i in range(400)]
    (corpus / "train.txt").write_text("\n<|endoftext|>\n".join(stories[:360]) + "\n")
    (corpus / "valid.txt").write_text("\n<|endoftext|>\n".join(stories[360:]) + "\n")
    wider = write_sweep(
        tmp_path, lr='trial.suggest_float("lr", 1e-3, 2e-2, log=True)', name="tiny"
    )  # same name, another range: a new file of the same sweep
    other = write_sweep(tmp_path, name="other")
    for args, what in (
        (
            study_args(
                url, sweep, cache_dir, "--trials", "2", "--data", str(corpus), budget=budget
            ),
            "another corpus",
        ),
        (
            study_args(
                url, other, cache_dir, "--trials", "2", "--study-name", "tiny", budget=budget
            ),
            "another sweep (--sweep): tiny, this run has other",
        ),
        (
            study_args(url, wider, cache_dir, "--trials", "2", budget=budget),
            "search space (its parameters and their ranges): lr FloatDistribution(high=0.01, "
            "log=True, low=0.001, step=None), this run has lr FloatDistribution(high=0.02",
        ),
    ):
        result = run(args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert what in result.stderr, result.stderr
    assert view(url, "tiny").by_state() == {"COMPLETE": 1}


def test_fixed_settings_show_an_edited_sweep_and_not_its_samples() -> None:
    """The sweep's fixed settings: the config's fields but those the run sets, the model's by
    dotted names, built from each parameter's first value, so seeds and samplers do not show
    and an edit of a fixed field does."""
    import optuna

    from study.config import FixedTerms, ModelConfig, TrainConfig
    from sweeps import Sweep

    def sweep(seq_len: int) -> Sweep:
        def suggest(trial: optuna.Trial) -> TrainConfig:
            d_model = trial.suggest_categorical("d_model", [32, 48])
            model = ModelConfig(n_layer=1, d_model=d_model, n_head=2, seq_len=seq_len)
            return TrainConfig(model=model, lr=trial.suggest_float("lr", 1e-3, 1e-2, log=True))

        return Sweep(name="s", spec="s", suggest=suggest, sampler=None)

    fixed = FixedTerms(budget=5.0, data="sample", device="cpu", seed=3)
    found = []
    for seed, seq_len in ((0, 64), (1, 64), (0, 128)):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        s = sweep(seq_len)
        probe = s.build(trial, fixed)
        found.append(
            comparability.fixed_settings(functools.partial(s.build, fixed=fixed), trial, probe)
        )
    assert found[0] == found[1]  # another sample of the same sweep
    assert found[0]["model.seq_len"] == 64 and found[2]["model.seq_len"] == 128
    assert found[0]["model.d_model"] == 32 and found[0]["lr"] == 1e-3  # first values
    assert not {"budget", "data", "device", "seed", "max_stories"} & set(found[0])
    assert {k for k in found[0] if found[0][k] != found[2][k]} == {"model.seq_len"}


def test_fixed_settings_compare_on_the_fields_both_name_and_late_terms_are_noted() -> None:
    ours: dict[str, Any] = {
        "budget": 60.0,
        "settings": {"lr": 0.001, "model.seq_len": 128, "new_field": 1},
    }
    stored: dict[str, Any] = {
        "budget": 60.0,
        "settings": {"lr": 0.001, "model.seq_len": 64, "old_field": 2},
    }
    with pytest.raises(UsageError, match=r"fixed settings .*: model.seq_len 64, this run has "):
        check_terms(stored, ours, study_name="s")
    stored["settings"]["model.seq_len"] = 128  # fields one side lacks are unknown, not changes
    assert check_terms(stored, ours, study_name="s") == {}
    older = {"budget": 60.0}  # a study made before the settings were recorded
    missing = check_terms(older, ours, study_name="s")
    assert missing == {"settings": ours["settings"]}
    note = comparability.late_terms_note(older, missing, study_name="s")
    assert note.startswith("note: study 's' was made before its sweep's fixed settings")
    assert comparability.late_terms_note({}, ours, study_name="s") == ""  # a new study


@pytest.mark.slow
def test_an_edited_sweep_file_is_refused_and_an_older_study_joined_with_a_note(
    tmp_path: Path, cache_dir: Path
) -> None:
    """The same sweep file with ``seq_len`` edited (same name and space) is refused with one line
    and exit 2 (issue 27 #7: it joined silently); the sweep as it was joins; a study made before
    the settings were recorded is joined with a note, and its settings recorded then."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'study.db'}"
    sweep = write_sweep(tmp_path)
    edited_dir = tmp_path / "edited"
    edited_dir.mkdir()
    edited = edited_dir / sweep.name
    edited.write_text(sweep.read_text().replace("seq_len=64", "seq_len=128"))
    assert edited.read_text() != sweep.read_text()
    first = run(study_args(url, sweep, cache_dir, "--trials", "1"))
    assert first.returncode == 0, first.stderr

    def refused() -> None:
        result = run(study_args(url, edited, cache_dir, "--trials", "2"))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert (
            "fixed settings" in result.stderr
            and "model.seq_len 64, this run has model.seq_len 128" in result.stderr
        )

    refused()
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # as a study made by an earlier version has it
        conn.execute(sa.text("DELETE FROM study_user_attributes WHERE key = 'settings'"))
    engine.dispose()
    joined = run(study_args(url, sweep, cache_dir, "--trials", "2"))
    assert joined.returncode == 0, joined.stderr
    assert "was made before its sweep's fixed settings" in joined.stdout
    assert view(url, "tiny").by_state() == {"COMPLETE": 2}
    refused()  # recorded by the run that joined
