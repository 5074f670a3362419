"""The lines a person watches: one per trial start and end, the study's standing after each trial,
the trainer's progress lines indented beneath, and the closing summary.

Workers print whole lines, flushed, so several workers on one terminal interleave by line.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from study.job import Outcome

ANALYSES = ("frontier", "crossover", "scaling_law", "report")
ETA_WINDOW = 10  # recent complete trials whose mean duration predicts the rest


def emit(line: str, out: TextIO | None = None) -> None:
    print(line, file=out if out is not None else sys.stdout, flush=True)


def fmt_count(n: float) -> str:
    """1234567 -> '1.23M', 42100 -> '42.1k', 950 -> '950'."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:.0f}"


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def fmt_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.2e}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())


def start_line(number: int, worker: int, params: dict[str, Any]) -> str:
    return f"trial {number} start [worker {worker}]: {fmt_params(params)}"


def progress_line(number: int, event: dict[str, Any]) -> str:
    """The trainer's progress event as one indented line: step | loss | lr | tok/s | elapsed."""
    return (f"    #{number} | step {int(event.get('step', 0)):6d} | "
            f"loss {float(event.get('train_loss', math.nan)):.4f} | "
            f"lr {float(event.get('lr', math.nan)):.2e} | "
            f"{fmt_count(float(event.get('tok_s', 0.0)))} tok/s | "
            f"{float(event.get('elapsed_s', 0.0)):.1f}/{float(event.get('budget', 0.0)):.0f}s")


def end_line(number: int, outcome: Outcome) -> str:
    if outcome.state == "complete" and outcome.result is not None:
        r = outcome.result
        return (f"trial {number} complete: ppl {r.val_ppl:.2f} | bpb {r.val_bpb:.3f} | "
                f"{fmt_count(r.params)} params | {fmt_count(r.tokens_seen)} tokens | "
                f"{fmt_count(r.tokens_per_second)} tok/s | {outcome.seconds:.1f}s")
    if outcome.state == "pruned":
        return f"trial {number} {outcome.reason}"
    return f"trial {number} failed: {outcome.reason}"


def study_line(name: str, trials: Sequence[FrozenTrial], *, target: int, workers: int) -> str:
    """Trials complete / target, failures, the best so far with its size, and time left."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    failed = sum(t.state == TrialState.FAIL for t in trials)
    pruned = sum(t.state == TrialState.PRUNED for t in trials)
    parts = [f"[{name}] {len(complete)}/{target} complete, {failed} failed, {pruned} pruned"]
    if complete:
        best = min(complete, key=lambda t: t.value if t.value is not None else math.inf)
        size = best.user_attrs.get("params")
        size_text = f"{fmt_count(size)} params; " if isinstance(size, (int, float)) else ""
        parts.append(f"best ppl {best.value:.2f} #{best.number} ({size_text}"
                     f"{fmt_params(best.params)})")
        durations = [t.duration.total_seconds() for t in complete[-ETA_WINDOW:]
                     if t.duration is not None]
        remaining = max(0, target - len(complete))
        if durations and remaining:
            eta = remaining * sum(durations) / len(durations) / max(1, workers)
            parts.append(f"~{fmt_duration(eta)} left")
    return " | ".join(parts)


def summary(name: str, url: str, trials: Sequence[FrozenTrial], *, target: int,
            top: int = 5) -> list[str]:
    """The closing lines: the best trials and the commands that plot and analyse them."""
    from optuna.trial import TrialState

    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                      key=lambda t: float(t.value or 0.0))
    lines = []
    if complete:
        lines.append(f"best {min(top, len(complete))} of {len(complete)} complete trials "
                     f"(held-out perplexity):")
        lines.append(f"  {'trial':>5}  {'ppl':>8}  {'bpb':>6}  {'params':>7}  {'tokens':>7}  "
                     f"{'tok/s':>7}  config")
        for t in complete[:top]:
            a = t.user_attrs
            lines.append(
                f"  {t.number:>5}  {t.value:>8.2f}  {float(a.get('val_bpb', math.nan)):>6.3f}  "
                f"{fmt_count(a.get('params', 0)):>7}  {fmt_count(a.get('tokens_seen', 0)):>7}  "
                f"{fmt_count(a.get('tokens_per_second', 0)):>7}  {fmt_params(t.params)}")
    args = f"--storage {shlex.quote(url)} --study-name {shlex.quote(name)}"
    lines.append("plot and analyse:")
    lines += [f"  python -m analysis.{a} {args}" for a in ANALYSES]
    lines.append(f"  optuna-dashboard {shlex.quote(url)}")
    return lines
