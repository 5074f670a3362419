"""Schedules as functions of the elapsed budget fraction (the number of steps is not known in
advance): the learning rate and the curriculum's sequence length."""

from __future__ import annotations

import math

CURRICULUM_START = 64  # first sequence length of the curriculum


def lr_at(
    frac: float,
    *,
    peak: float,
    warmup_frac: float,
    schedule: str = "cosine",
    cooldown_frac: float = 0.5,
) -> float:
    """Learning rate at elapsed budget fraction ``frac``: linear warmup over ``warmup_frac``,
    then ``cosine`` decay to 0 at 1, or ``wsd`` (warmup-stable-decay): ``peak`` until the last
    ``cooldown_frac`` of the budget, then linear decay to 0 at 1."""
    frac = min(max(frac, 0.0), 1.0)
    if warmup_frac > 0 and frac < warmup_frac:
        return peak * frac / warmup_frac
    if schedule == "wsd":
        return peak * min(1.0, (1.0 - frac) / cooldown_frac)
    progress = (frac - warmup_frac) / (1.0 - warmup_frac)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def seq_len_at(frac: float, *, full: int, curriculum: bool) -> int:
    """Sequence length at ``frac``: with the curriculum, powers of two from 64 that reach the full
    length by half the budget (few distinct shapes, so a compiled step recompiles rarely)."""
    if not curriculum or full <= CURRICULUM_START:
        return full
    doublings = math.ceil(math.log2(full / CURRICULUM_START))
    stage = min(int(frac / 0.5 * doublings), doublings)
    return min(CURRICULUM_START * 2**stage, full)
