"""``study.progress``: the study's standing after each trial and the closing summary."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from study import progress


def test_study_line_and_summary() -> None:
    study = optuna.create_study()
    for value, size in ((30.0, 2_500_000), (20.0, 1_310_000)):
        trial = study.ask()
        trial.suggest_int("n_layer", 1, 6)
        trial.set_user_attr("params", size)
        study.tell(trial, value)
    trial = study.ask()
    trial.set_user_attr("fail_reason", "oom: x")
    study.tell(trial, state=TrialState.FAIL)
    line = progress.study_line("s", study.trials, target=5, workers=1)
    assert line.startswith("[s] 2/5 complete, 1 failed, 0 pruned | best ppl 20.00 #1 (1.31M "
                           "params; n_layer=")
    assert line.endswith(" left")
    lines = [line.strip() for line in progress.summary("s", "sqlite:///x.db", study.trials,
                                                        target=5)]
    assert "python -m analysis.scaling_law --storage sqlite:///x.db --study-name s" in lines
    assert "optuna-dashboard sqlite:///x.db" in lines
    assert [line.split()[0] for line in lines[2:4]] == ["1", "0"]  # best first
    assert progress.fmt_count(1_234_567) == "1.23M" and progress.fmt_duration(165) == "2m45s"
