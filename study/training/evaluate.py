"""Held-out evaluation: the fixed windows every measurement of a study uses, and their loss.

One protocol: every curve point and the final point of a trial are scored on the same windows
(``eval_windows``), so a point's value differs from another's only because the model changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager
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


@torch.no_grad()
def evaluate(
    model: LanguageModel,
    windows: torch.Tensor,
    *,
    token_bytes: torch.Tensor,
    batch_size: int,
    amp: Callable[[], AbstractContextManager[Any]],
    threads: ThreadTuner | None = None,
) -> tuple[float, float]:
    """Mean per-token NLL (nats) on ``windows`` (n, T+1) and bits per byte:
    total NLL / (ln 2 x UTF-8 bytes of the predicted tokens). The model is left in the mode it
    came in. ``threads`` may time batches to pick the CPU thread count."""
    was_training = model.training
    model.train(False)
    total_nll = torch.zeros((), dtype=torch.float64, device=windows.device)
    for i in range(0, windows.size(0), batch_size):
        chunk = windows[i : i + batch_size]
        if threads is not None:
            threads.before("eval")
        with amp():
            nll = model.nll_sum(chunk[:, :-1], chunk[:, 1:])
        total_nll += nll.double()
        if threads is not None:
            threads.after()
    model.train(was_training)
    targets = windows[:, 1:]
    n_bytes = token_bytes[targets].sum().item()
    total = total_nll.item()
    return total / targets.numel(), total / (math.log(2) * n_bytes)
