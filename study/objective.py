"""What a study minimises: the one owner of the Optuna value of a trial and of its curve points.

A study of one vocabulary minimises held-out per-token perplexity, as every study always has.
Per-token perplexity does not compare across vocabularies (a token of a 1024-token vocabulary
holds fewer bytes than one of a 4096-token vocabulary, so small vocabularies score lower per
token for no better model), so a study of several vocabularies minimises held-out bits per byte
instead: the value its sampler sees and its pruner compares, intermediate values included. It
records that as the study term ``objective`` (``OBJECTIVE_ATTR`` = ``"bpb"``); a study without
the term minimises perplexity (every study made before the term existed, the shipped ones too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PPL = "ppl"
BPB = "bpb"
OBJECTIVE_ATTR = "objective"  # study user attribute, recorded only where it is BPB
LABELS = {PPL: "held-out perplexity", BPB: "held-out bits per byte"}
ATTRS = {PPL: "val_ppl", BPB: "val_bpb"}  # the trial attribute that holds each objective


def study_objective(vocab_sizes: tuple[int, ...] | None) -> str:
    """BPB for a study of several vocabularies, PPL for one (or None: not known yet)."""
    return BPB if vocab_sizes is not None and len(vocab_sizes) > 1 else PPL


def of_study(attrs: Mapping[str, Any]) -> str:
    """The objective a study's user attributes ``attrs`` record (PPL where they record none)."""
    return BPB if attrs.get(OBJECTIVE_ATTR) == BPB else PPL


def final_value(*, val_ppl: float, val_bpb: float, objective: str) -> float:
    """A complete trial's Optuna value under ``objective``."""
    return val_bpb if objective == BPB else val_ppl


def point_value(event: Mapping[str, Any], objective: str) -> float | None:
    """A curve event's intermediate value under ``objective`` (its ``val_bpb``, or the
    perplexity of its ``val_loss``); None where the event holds no finite one."""
    raw = event.get("val_bpb") if objective == BPB else event.get("val_loss")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        return None
    return float(raw) if objective == BPB else math.exp(min(float(raw), 700.0))


def stored_point_value(
    point: Mapping[str, Any], *, eval_bytes: int | None, objective: str
) -> float | None:
    """A stored curve point's intermediate value under ``objective``: the same number its event
    gave (bits per byte is its total loss, ``val_loss`` x ``eval_tokens`` nats, over
    ln 2 x ``eval_bytes``); None where the point cannot give one."""
    if objective != BPB:
        return point_value(point, objective)
    loss, targets = point.get("val_loss"), point.get("eval_tokens")
    if not isinstance(loss, int | float) or not isinstance(targets, int) or not eval_bytes:
        return None
    return point_value({"val_bpb": loss * targets / (math.log(2) * eval_bytes)}, BPB)
