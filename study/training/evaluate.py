"""Held-out evaluation: the fixed windows every measurement of a study uses, and their loss.

One protocol: every curve point and the final point of a trial are scored on the same windows
(``heldout_set``), so a point's value differs from another's only because the model changed.
Two ways to choose them: ``eval_tokens`` held-out tokens of the trial's own vocabulary
(``eval_windows``, the default), or ``eval_bytes`` of held-out text in whole stories
(``span_windows``), the same bytes in every vocabulary, so bits per byte compare across them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from study.errors import UsageError
from study.models import LanguageModel

if TYPE_CHECKING:
    from study.training.clock import ThreadTuner


def eval_windows(tokens: np.ndarray, *, n_tokens: int, seq_len: int) -> np.ndarray:
    """The fixed held-out set: consecutive, non-overlapping windows of ``seq_len + 1`` ids from
    the start of the held-out array (targets overlap inputs by one), as many as fit up to
    ``n_tokens`` targets (at least one window).

    Raises:
        UsageError: the held-out array is shorter than one window.
    """
    if len(tokens) < seq_len + 1:
        raise UsageError(
            f"the held-out split has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}"
        )
    n_windows = max(1, min(n_tokens // seq_len, (len(tokens) - 1) // seq_len))
    starts = np.arange(n_windows) * seq_len
    return np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)


def span_windows(
    tokens: np.ndarray, *, token_bytes: np.ndarray, eot_id: int, n_bytes: int, seq_len: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The held-out set of ``n_bytes`` bytes: the first whole stories of the held-out array
    (each ends at its ``eot_id``) whose UTF-8 bytes, their end-of-text ids counting one each,
    reach ``n_bytes`` (all of them if they hold fewer). Every tokenizer of a corpus cuts the
    stories at the same places, so every vocabulary scores the same text. Every token of them is
    a target, the first given an end-of-text id before it (the story boundary every story
    follows in training): ``seq_len`` targets per window of ``seq_len + 1`` ids, and the rest in
    one shorter window.

    Returns:
        windows: (n, seq_len + 1) int64 (n may be 0). tail: (1, r + 1) int64 for the last
        r < seq_len targets, or None when none are left.

    Raises:
        UsageError: the held-out array holds no whole story.
    """
    ends = np.flatnonzero(tokens == eot_id)  # where each story ends
    if not ends.size:
        raise UsageError("the held-out split holds no whole story (no end-of-text id)")
    upto = np.cumsum(token_bytes[tokens[: ends[-1] + 1]], dtype=np.int64)[ends]  # per story
    last = min(int(np.searchsorted(upto, n_bytes)), ends.size - 1)
    ids = np.concatenate(([eot_id], tokens[: ends[last] + 1])).astype(np.int64)
    n_windows = (ids.size - 1) // seq_len
    windows = ids[np.arange(n_windows)[:, None] * seq_len + np.arange(seq_len + 1)]
    rest = ids[n_windows * seq_len :]
    return windows, (rest[None, :] if rest.size > 1 else None)


@dataclass(frozen=True)
class HeldOut:
    """The held-out windows a trial is scored on: ``windows`` (n, T + 1) and, for a byte span,
    the ``tail`` window (1, r + 1) of its last r targets."""

    windows: np.ndarray
    tail: np.ndarray | None = None


def heldout_set(
    tokens: np.ndarray,
    *,
    seq_len: int,
    eval_tokens: int,
    eval_bytes: int | None,
    token_bytes: np.ndarray,
    eot_id: int,
) -> HeldOut:
    """``eval_bytes`` of held-out text (``span_windows``) when it is set, else ``eval_tokens``
    held-out tokens (``eval_windows``)."""
    if eval_bytes is None:
        return HeldOut(eval_windows(tokens, n_tokens=eval_tokens, seq_len=seq_len))
    windows, tail = span_windows(
        tokens, token_bytes=token_bytes, eot_id=eot_id, n_bytes=eval_bytes, seq_len=seq_len
    )
    return HeldOut(windows, tail)


@torch.no_grad()
def evaluate(
    model: LanguageModel,
    windows: torch.Tensor,
    *,
    token_bytes: torch.Tensor,
    batch_size: int,
    amp: Callable[[], AbstractContextManager[Any]],
    threads: ThreadTuner | None = None,
    tail: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Mean per-token NLL (nats) on ``windows`` (n, T+1) and the shorter ``tail`` (1, r+1) if
    given, and bits per byte: total NLL / (ln 2 x UTF-8 bytes of the predicted tokens). The
    model is left in the mode it came in. ``threads`` may time batches to pick the CPU thread
    count."""
    was_training = model.training
    model.train(False)
    total_nll = torch.zeros((), dtype=torch.float64, device=windows.device)
    chunks = [windows[i : i + batch_size] for i in range(0, windows.size(0), batch_size)]
    for chunk in chunks if tail is None else [*chunks, tail]:
        if threads is not None:
            threads.before("eval")
        with amp():
            nll = model.nll_sum(chunk[:, :-1], chunk[:, 1:])
        total_nll += nll.double()
        if threads is not None:
            threads.after()
    model.train(was_training)
    parts = [windows[:, 1:]] + ([] if tail is None else [tail[:, 1:]])
    n_bytes = sum(token_bytes[targets].sum().item() for targets in parts)
    n_targets = sum(targets.numel() for targets in parts)
    total = total_nll.item()
    return total / n_targets, total / (math.log(2) * n_bytes)
