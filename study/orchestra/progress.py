"""What a person watches: on a terminal (one worker) a study-level tqdm bar, trials done / asked,
best so far, elapsed and time left, with the running trial's step, loss and tok/s on a status line
beneath (``Display``); elsewhere (logs, CI, several workers) plain lines: one per trial start and
end, the study's standing after each trial, the trainer's progress lines indented beneath. Then
the closing summary.

Workers print whole lines, flushed, so several workers on one terminal interleave by line.
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from study.fmt import fmt_count
from study.objective import ATTRS, LABELS, PPL
from study.redact import safe_url

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial
    from tqdm import tqdm

    from study.orchestra.job import Outcome

# The commands a study prints at its end, each with the file it writes.
ANALYSES = (
    ("curves", "--plot curves.png"),
    ("frontier", "--plot frontier.png"),
    ("crossover", "--plot crossover.png"),
    ("scaling_law", "--plot loss_law.png"),
    ("trials", "--csv trials.csv"),
    ("report", "--out report.html"),
)
ETA_WINDOW = 10  # recent complete trials whose mean duration predicts the rest
REDRAW_S = 1.0  # seconds between redraws of the bar while nothing else changes
MAX_EPOCHS = 4.0  # beyond this, repeated data weakens a fit that assumes fresh tokens


def emit(line: str, out: TextIO | None = None) -> None:
    print(line, file=out if out is not None else sys.stdout, flush=True)


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{k}={v:.2e}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def start_line(number: int, worker: int, params: dict[str, Any]) -> str:
    return f"trial {number} start [worker {worker}]: {fmt_params(params)}"


def progress_line(number: int, event: dict[str, Any]) -> str:
    """The trainer's progress event as one indented line: step | loss | lr | tok/s | elapsed."""
    return (
        f"    #{number} | step {int(event.get('step', 0)):6d} | "
        f"loss {float(event.get('train_loss', math.nan)):.4f} | "
        f"lr {float(event.get('lr', math.nan)):.2e} | "
        f"{fmt_count(float(event.get('tok_s', 0.0)))} tok/s | "
        f"{float(event.get('elapsed_s', 0.0)):.1f}/{float(event.get('budget', 0.0)):.0f}s"
    )


def end_line(number: int, outcome: Outcome) -> str:
    if outcome.state == "complete" and outcome.result is not None:
        r = outcome.result
        return (
            f"trial {number} complete: ppl {r.val_ppl:.2f} | bpb {r.val_bpb:.3f} | "
            f"{fmt_count(r.params)} params | {fmt_count(r.tokens_seen)} tokens | "
            f"{fmt_count(r.tokens_per_second)} tok/s | {outcome.seconds:.1f}s"
        )
    if outcome.state == "pruned":
        return f"trial {number} {outcome.reason}"
    return f"trial {number} failed: {outcome.reason}"


def study_line(
    name: str, trials: Sequence[FrozenTrial], *, target: int, workers: int, objective: str = PPL
) -> str:
    """Trials complete / target, failures, the best so far (by the study's ``objective``,
    ``study.objective``) with its size, and time left."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    parts = [f"[{name}] {len(complete)}/{target} complete, {failed} failed, {pruned} pruned"]
    if complete:
        best = min(complete, key=lambda t: t.value if t.value is not None else math.inf)
        size = best.user_attrs.get("params")
        about = [f"{fmt_count(size)} params"] if isinstance(size, (int, float)) else []
        about += [fmt_params(best.params)] if best.params else []  # a fixed sweep has none
        parts.append(
            f"best {best_value(best, objective)} #{best.number}"
            + (f" ({'; '.join(about)})" if about else "")
        )
        durations = [
            t.duration.total_seconds() for t in complete[-ETA_WINDOW:] if t.duration is not None
        ]
        remaining = max(0, target - len(complete))
        if durations and remaining:
            eta = remaining * sum(durations) / len(durations) / max(1, workers)
            parts.append(f"~{fmt_duration(eta)} left")
    return " | ".join(parts)


def best_value(trial: FrozenTrial, objective: str) -> str:
    """A trial's value as the study's standing shows it: ``ppl 5.21`` or ``bpb 1.102``."""
    return f"{objective} {trial.value:.2f}" if objective == PPL else f"bpb {trial.value:.3f}"


def _attr(trial: FrozenTrial, name: str, objective: str) -> float:
    """A stored metric of ``trial``; the objective's own is its value where it was not stored."""
    value = trial.user_attrs.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float(trial.value) if ATTRS[objective] == name and trial.value is not None else math.nan


def summary(
    name: str,
    url: str,
    trials: Sequence[FrozenTrial],
    *,
    target: int,
    top: int = 5,
    objective: str = PPL,
) -> list[str]:
    """The closing lines: the best trials (by the study's ``objective``, each with its stored
    perplexity and bits per byte) and the commands that plot and analyse them."""
    from optuna.trial import TrialState

    complete = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
        key=lambda t: float(t.value or 0.0),
    )
    lines = []
    if complete:
        lines.append(
            f"best {min(top, len(complete))} of {len(complete)} complete trials "
            f"({LABELS[objective]}):"
        )
        lines.append(
            f"  {'trial':>5}  {'ppl':>8}  {'bpb':>6}  {'params':>7}  {'tokens':>7}  "
            f"{'tok/s':>7}  config"
        )
        for t in complete[:top]:
            params, seen, rate = (
                _number(t.user_attrs, key) for key in ("params", "tokens_seen", "tokens_per_second")
            )
            lines.append(
                f"  {t.number:>5}  {_attr(t, 'val_ppl', objective):>8.2f}  "
                f"{_attr(t, 'val_bpb', objective):>6.3f}  {fmt_count(params):>7}  "
                f"{fmt_count(seen):>7}  {fmt_count(rate):>7}  {fmt_params(t.params)}"
            )
        from study.orchestra.vocabularies import vocab_lines  # it imports this module

        lines += vocab_lines(complete)
    lines += budget_lines(complete)
    url = safe_url(url)  # printed: never a secret, whoever calls
    args = f"--storage {shlex.quote(url)} --study-name {shlex.quote(name)}"
    lines.append("plot and analyse (each writes the file it names, here):")
    lines += [f"  python -m analysis.{a} {args} {extra}" for a, extra in ANALYSES]
    lines.append(f"  optuna-dashboard {shlex.quote(url)}")
    return lines


def _number(attrs: dict[str, Any], key: str) -> float:
    """A trial's numeric attribute as read from the database: NaN where it is missing or not a
    number (a value this harness did not write is shown as unknown, never a traceback)."""
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def budget_lines(complete: Sequence[FrozenTrial]) -> list[str]:
    """Where the complete trials' time went beyond training (mean and worst seconds outside the
    budget; compile seconds inside it), and a warning for trials past ``MAX_EPOCHS``."""
    lines = []
    for key, text in (
        ("outside_seconds", "outside the budget (start-up, evaluation, exit)"),
        ("compile_seconds", "compiling inside the budget"),
    ):
        values = [
            float(v)
            for t in complete
            if isinstance(v := t.user_attrs.get(key), (int, float)) and math.isfinite(v)
        ]
        if values:
            lines.append(
                f"seconds per trial {text}: mean {sum(values) / len(values):.1f}, "
                f"max {max(values):.1f}"
            )
    repeated = [t.number for t in complete if _number(t.user_attrs, "epochs") > MAX_EPOCHS]
    if repeated:
        lines.append(
            f"warning: {len(repeated)} trial(s) saw their training tokens more than "
            f"{MAX_EPOCHS:g} times ("
            + ", ".join(f"#{n}" for n in repeated[:10])
            + "); repeated data weakens fits that assume fresh tokens "
            "(more data: --max-stories, or a larger --data)"
        )
    return lines


def time_left(
    *,
    remaining: int,
    budget: float,
    overhead: float,
    workers: int,
    running_elapsed: float | None = None,
) -> float:
    """Seconds until the study is done: ``remaining`` trials still to finish (the running one
    included), each its ``budget`` plus the measured ``overhead`` per trial (start-up,
    evaluation, exit), shared by ``workers``; the running trial counts only what it has left of
    its budget (``running_elapsed`` budgeted seconds spent)."""
    if remaining <= 0:
        return 0.0
    per_trial = budget + max(0.0, overhead)
    total = remaining * per_trial
    if running_elapsed is not None:
        total -= min(max(0.0, running_elapsed), budget)
    return total / max(1, workers)


class Display:
    """The study as a person watches it: a tqdm bar on a terminal, plain lines elsewhere.

    The bar (one worker, ``out`` a terminal) shows trials complete / asked, the best value
    (``study.objective``) so far, elapsed time and time left (``time_left``: the budget x trials left, plus the
    overhead per trial measured on the trials of this run, 0 until one has finished), with the
    running trial's step, loss and tok/s on a status line beneath. Trial start and end lines are
    written above the bar. Without a terminal, or with several workers (whose bars would fight
    over one screen), the same events print the plain lines of ``start_line``,
    ``progress_line``, ``end_line`` and ``study_line``.
    """

    def __init__(
        self,
        name: str,
        *,
        target: int,
        done: int,
        budget: float,
        workers: int = 1,
        out: TextIO | None = None,
        bar: bool | None = None,
        objective: str = PPL,
    ) -> None:
        self.name, self.target, self.done = name, target, done
        self.objective = objective
        self.budget, self.workers = budget, workers
        self.out = out if out is not None else sys.stdout
        self.overheads: list[float] = []  # measured seconds outside the budget, per trial
        self.best = ""
        self.running_elapsed: float | None = None
        self._drawn = 0.0  # time.monotonic() of the last redraw
        if bar is None:
            bar = workers == 1 and _is_terminal(self.out)
        self._bar: tqdm[Any] | None = None
        self._status: tqdm[Any] | None = None
        if bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=target,
                initial=min(done, target),
                file=self.out,
                desc=f"[{name}]",
                unit="trial",
                dynamic_ncols=True,
                bar_format="{desc} {n_fmt}/{total_fmt} trials |{bar}| {elapsed} elapsed{postfix}",
            )
            self._status = tqdm(
                total=0,
                file=self.out,
                position=1,
                leave=False,
                bar_format="  {desc}",
                dynamic_ncols=True,
            )
            self._refresh()

    @property
    def bar(self) -> bool:
        return self._bar is not None

    def line(self, text: str) -> None:
        """A whole line: above the bar on a terminal, else printed."""
        if self._bar is not None:
            self._bar.write(text, file=self.out)
        else:
            emit(text, self.out)

    def trial_started(self, number: int, worker: int, params: dict[str, Any]) -> None:
        self.line(start_line(number, worker, params))
        self.running_elapsed = 0.0
        self._refresh()

    def trial_progress(self, number: int, event: dict[str, Any]) -> None:
        if self._status is None:
            emit(progress_line(number, event), self.out)
            return
        self.running_elapsed = float(event.get("elapsed_s", 0.0))
        self._status.set_description_str(progress_line(number, event).strip(), refresh=False)
        self._refresh()

    def trial_ended(self, number: int, outcome: Outcome, trials: Sequence[FrozenTrial]) -> None:
        """The trial's end line and the study's standing in ``trials`` (all of the study)."""
        from optuna.trial import TrialState

        self.line(end_line(number, outcome))
        self.running_elapsed = None
        if outcome.result is not None and outcome.result.outside_seconds is not None:
            self.overheads.append(outcome.result.outside_seconds)
        if self._bar is None:
            line = study_line(
                self.name,
                trials,
                target=self.target,
                workers=self.workers,
                objective=self.objective,
            )
            emit(line, self.out)
            return
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        self.done = len(complete)
        if complete:
            best = min(complete, key=lambda t: float(t.value or math.inf))
            size = best.user_attrs.get("params")
            self.best = f"best {best_value(best, self.objective)} #{best.number}" + (
                f" ({fmt_count(size)} params)" if isinstance(size, (int, float)) else ""
            )
        self._bar.n = min(self.done, self.target)
        if self._status is not None:
            self._status.set_description_str("", refresh=False)
        self._refresh()

    def tick(self) -> None:
        """Called often (each poll of the running trial): redraws the bar about once a second,
        so its elapsed time moves between the trainer's progress events."""
        if self._bar is not None and time.monotonic() - self._drawn >= REDRAW_S:
            self._refresh()

    def close(self) -> None:
        for bar in (self._status, self._bar):
            if bar is not None:
                bar.close()
        self._bar = self._status = None

    def _refresh(self) -> None:
        if self._bar is None:
            return
        overhead = sum(self.overheads) / len(self.overheads) if self.overheads else 0.0
        left = time_left(
            remaining=self.target - self.done,
            budget=self.budget,
            overhead=overhead,
            workers=self.workers,
            running_elapsed=self.running_elapsed,
        )
        parts = [p for p in (self.best, f"~{fmt_duration(left)} left") if p]
        self._bar.set_postfix_str(" | ".join(parts), refresh=False)
        self._bar.refresh()
        self._drawn = time.monotonic()
        if self._status is not None:
            self._status.refresh()


def _is_terminal(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False
