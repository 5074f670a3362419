from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from study import stale, store


def test_fail_and_retry_accepts_a_live_trial(tmp_path: Path) -> None:
    """An interrupted worker hands over the live ``optuna.Trial`` it was running."""
    storage = store.open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    trial.suggest_int("n_layer", 1, 6)
    assert stale.fail_and_retry(study, storage, storage.engine, trial, reason="interrupted")
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == "interrupted"
    assert trials[1].state == TrialState.WAITING
    assert trials[1].user_attrs["retry_of"] == 0
    assert trials[1].system_attrs["fixed_params"] == trials[0].params
