"""The event stream from a training child to its parent: the one owner of its kinds and fields.

The child (``study.train`` through ``study.training.trainer``) appends one JSON object per line
to its events file as things happen; the parent (``study.orchestra.job``) tails the file and
passes each event on: ``progress`` to the display, ``curve`` and ``final`` to the pruner and the
stored curve. Every event carries its ``kind`` first; the fields of each kind are the TypedDicts
below, made only by the constructors here, so writer, reader and the tests' fake trainer agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, NotRequired, TextIO, TypedDict

from study.result import CurvePoint

PROGRESS: Literal["progress"] = "progress"
CURVE: Literal["curve"] = "curve"
FINAL: Literal["final"] = "final"


class ProgressEvent(TypedDict):
    """One progress reading, every ``log_interval`` budgeted seconds."""

    kind: Literal["progress"]
    elapsed_s: float  # budgeted seconds so far
    budget: float  # the job's budget in seconds
    step: int  # optimizer steps so far
    train_loss: float
    lr: float
    tok_s: float  # training tokens per budgeted second so far


class CurveEvent(TypedDict):
    """One point of the loss curve (``CurvePoint``'s fields) at ``frac`` of the budget."""

    kind: Literal["curve"]
    frac: float  # index / curve_points: the point's fixed fraction of the budget
    elapsed_s: float
    tokens: int
    train_loss: float
    val_loss: float | None  # None on the last point: the final evaluation gives it
    eval_tokens: NotRequired[int]
    val_bpb: NotRequired[float | None]  # the same evaluation in bits per byte (study.objective)


class FinalEvent(TypedDict):
    """The final held-out evaluation (it closes the curve: the parent reads it at frac 1)."""

    kind: Literal["final"]
    val_loss: float
    val_bpb: float


Event = ProgressEvent | CurveEvent | FinalEvent


def progress(
    *, elapsed_s: float, budget: float, step: int, train_loss: float, lr: float, tok_s: float
) -> ProgressEvent:
    return ProgressEvent(
        kind=PROGRESS,
        elapsed_s=elapsed_s,
        budget=budget,
        step=step,
        train_loss=train_loss,
        lr=lr,
        tok_s=tok_s,
    )


def curve(*, frac: float, point: CurvePoint, val_bpb: float | None = None) -> CurveEvent:
    event = CurveEvent(
        kind=CURVE,
        frac=frac,
        elapsed_s=point["elapsed_s"],
        tokens=point["tokens"],
        train_loss=point["train_loss"],
        val_loss=point["val_loss"],
    )
    if "eval_tokens" in point:
        event["eval_tokens"] = point["eval_tokens"]
    if val_bpb is not None:
        event["val_bpb"] = val_bpb
    return event


def final(*, val_loss: float, val_bpb: float) -> FinalEvent:
    return FinalEvent(kind=FINAL, val_loss=val_loss, val_bpb=val_bpb)


@dataclass
class Events:
    """The child's side: each event a JSON line, flushed as it happens; nothing without a
    stream."""

    stream: TextIO | None = None

    def emit(self, event: Event) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps(event) + "\n")
            self.stream.flush()
