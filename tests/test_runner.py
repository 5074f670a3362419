"""``study.orchestra.runner``: splitting devices and cores among workers, sampler seeds, refusing an
existing study whose trials would not compare."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from studyrun import REPO, run, study_args, view, write_sweep

from study.errors import UsageError
from study.orchestra import launch, runner
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
