"""``study.orchestra.progress``: the study's standing after each trial, the bar on a terminal against
plain lines elsewhere, and the closing summary."""

from __future__ import annotations

import fcntl
import importlib
import os
import select
import shlex
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from study.fmt import fmt_count
from study.orchestra import progress, vocabularies

REPO = Path(__file__).resolve().parents[1]


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
    assert line.startswith(
        "[s] 2/5 complete, 1 failed, 0 pruned | best ppl 20.00 #1 (1.31M params; n_layer="
    )
    assert line.endswith(" left")
    lines = [
        line.strip() for line in progress.summary("s", "sqlite:///x.db", study.trials, target=5)
    ]
    assert (
        "python -m analysis.scaling_law --storage sqlite:///x.db --study-name s --plot loss_law.png"
    ) in lines
    assert "optuna-dashboard sqlite:///x.db" in lines
    assert [line.split()[0] for line in lines[2:4]] == ["1", "0"]  # best first
    assert progress.fmt_count is fmt_count  # the one number format
    assert progress.fmt_duration(165) == "2m45s"


@pytest.mark.parametrize(("module", "extra"), progress.ANALYSES)
def test_printed_analyses_parse_and_name_their_file(module: str, extra: str) -> None:
    """Every command the summary prints parses with its module's own parser, and the file it
    names is the one the command will write."""
    parser = importlib.import_module(f"analysis.{module}").build_parser()
    args = parser.parse_args(shlex.split(f"--storage sqlite:///x.db --study-name s {extra}"))
    flag, path = shlex.split(extra)
    assert getattr(args, flag.lstrip("-").replace("-", "_")) == path


def complete_trial(study: optuna.Study, value: float, **attrs: float) -> None:
    trial = study.ask()
    for key, v in attrs.items():
        trial.set_user_attr(key, v)
    study.tell(trial, value)


def test_summary_shows_time_outside_budget_compile_and_repetition() -> None:
    study = optuna.create_study()
    complete_trial(study, 30.0, outside_seconds=4.0, compile_seconds=1.0, epochs=0.5)
    complete_trial(study, 20.0, outside_seconds=8.0, compile_seconds=3.0, epochs=6.0)
    lines = progress.summary("s", "sqlite:///x.db", study.trials, target=2)
    assert (
        "seconds per trial outside the budget (start-up, evaluation, exit): mean 6.0, max 8.0"
    ) in lines
    assert "seconds per trial compiling inside the budget: mean 2.0, max 3.0" in lines
    warning = next(line for line in lines if line.startswith("warning:"))
    assert "1 trial(s)" in warning and "more than 4 times (#1)" in warning
    # A sweep without parameters and a trial without a size: nothing empty in brackets.
    line = progress.study_line("s", study.trials, target=2, workers=1)
    assert line == "[s] 2/2 complete, 0 failed, 0 pruned | best ppl 20.00 #1", line
    quiet = optuna.create_study()
    complete_trial(quiet, 30.0, epochs=4.0)  # at the limit: no warning, no timing lines
    assert not progress.budget_lines(quiet.trials)


def test_summary_notes_trials_of_several_vocabularies() -> None:
    study = optuna.create_study()
    for value, vocab in ((30.0, 1024), (20.0, 4096), (25.0, 4096)):
        trial = study.ask()
        trial.set_user_attr("config", {"model": {"vocab_size": vocab}})
        study.tell(trial, value)
    lines = progress.summary("s", "sqlite:///x.db", study.trials, target=3)
    (note,) = [line for line in lines if line.startswith("note:")]
    assert note.startswith("note: these trials use 2 vocabularies (1024, 4096): per-token")
    assert not vocabularies.vocab_lines(study.trials[1:])  # one vocabulary: no note


def test_time_left_counts_budget_overhead_and_the_running_trial() -> None:
    assert progress.time_left(remaining=3, budget=10.0, overhead=0.0, workers=1) == 30.0
    assert progress.time_left(remaining=3, budget=10.0, overhead=2.0, workers=1) == 36.0
    assert (
        progress.time_left(remaining=3, budget=10.0, overhead=2.0, workers=1, running_elapsed=4.0)
        == 32.0
    )
    assert progress.time_left(remaining=4, budget=10.0, overhead=0.0, workers=2) == 20.0
    assert progress.time_left(remaining=0, budget=10.0, overhead=5.0, workers=1) == 0.0


# A study's events played to a Display whose output is the child's stdout.
DISPLAY_SCRIPT = textwrap.dedent("""
    import optuna
    from study.orchestra.job import Outcome
    from study.orchestra.progress import Display
    from tests_result import result

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    display = Display("s", target=3, done=0, budget=10.0)
    print("BAR" if display.bar else "PLAIN", flush=True)
    display.trial_started(0, 0, {"n_layer": 2})
    display.trial_progress(0, {"step": 120, "train_loss": 4.5, "lr": 1e-3, "tok_s": 12300.0,
                               "elapsed_s": 5.0, "budget": 10.0})
    trial = study.ask()
    trial.set_user_attr("params", 1_310_000)
    study.tell(trial, 20.0)
    display.trial_ended(0, Outcome("complete", result, seconds=14.0), study.trials)
    display.close()
""")


def play_display(tmp_path: Path, *, tty: bool) -> str:
    """Run ``DISPLAY_SCRIPT`` with stdout on a pseudo-terminal or a pipe; what it wrote."""
    from studyrun import make_result

    (tmp_path / "tests_result.py").write_text(
        "from study.result import TrainResult\n"
        f"result = TrainResult(**{make_result(outside_seconds=4.0).to_dict()!r})\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]),
        "COLUMNS": "120",
    }
    if not tty:
        proc = subprocess.run(
            [sys.executable, "-c", DISPLAY_SCRIPT],
            capture_output=True,
            env=env,
            timeout=120,
            check=True,
        )
        return proc.stdout.decode()
    leader, follower = os.openpty()
    # A terminal 120 columns wide, 30 rows high (a fresh pseudo-terminal reports 0 x 0).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    child = subprocess.Popen(
        [sys.executable, "-c", DISPLAY_SCRIPT], stdout=follower, stderr=subprocess.PIPE, env=env
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif child.poll() is not None:
            break
    os.close(leader)
    assert child.wait(30) == 0, child.stderr.read() if child.stderr else ""
    return b"".join(chunks).decode()


@pytest.mark.slow
def test_bar_on_a_terminal_plain_lines_without(tmp_path: Path) -> None:
    text = play_display(tmp_path, tty=True)
    assert "BAR" in text and "PLAIN" not in text
    # tqdm redraws in place: carriage returns, and the status line beneath reached by moving
    # the cursor; the bar counts trials and shows the best and the time left.
    assert "\r" in text and "\x1b[A" in text
    assert "[s] 0/3 trials" in text and "[s] 1/3 trials" in text
    assert "best ppl 20.00 #0 (1.31M params)" in text
    # Before any trial ended: 3 x 10 s budget, 5 s of the running one spent -> 25 s left.
    assert "~25s left" in text
    # After one: 2 trials x (10 s + its 4 s outside the budget) -> 28 s.
    assert "~28s left" in text
    assert "#0 | step    120 | loss 4.5000 | lr 1.00e-03 | 12.3k tok/s | 5.0/10s" in text
    assert "trial 0 start [worker 0]: n_layer=2" in text
    assert "trial 0 complete: ppl 66.70" in text

    plain = play_display(tmp_path, tty=False)
    lines = plain.splitlines()
    assert lines[0] == "PLAIN" and "\r" not in plain and "\x1b" not in plain
    assert lines[1] == "trial 0 start [worker 0]: n_layer=2"
    assert lines[2] == ("    #0 | step    120 | loss 4.5000 | lr 1.00e-03 | 12.3k tok/s | 5.0/10s")
    assert lines[3].startswith("trial 0 complete: ppl 66.70 | bpb 2.000 | 300k params")
    assert lines[4].startswith("[s] 1/3 complete, 0 failed, 0 pruned | best ppl 20.00 #0")
    assert len(lines) == 5
