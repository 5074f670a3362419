"""Interpolated Witten-Bell n-gram language models counted with numpy: the baseline a trained
model must beat.

Pure code: token arrays in, probabilities out, no I/O. An n-gram (or its context) is packed
into one ``uint64`` key, ``key = key * M + token`` for each of its tokens. With ``M`` the vocab
size the packing is exact while ``vocab_size ** order`` fits 64 bits (4096-id vocab: order 5);
beyond that ``M`` is a large odd constant and keys wrap, a hash whose collisions are rare at
millions of n-grams. Counting is ``np.unique`` over the keys of every position, lookup is
``np.searchsorted``, so orders 1-5 on millions of tokens take seconds.

Witten-Bell (interpolated), with ``c(h)`` the count of context ``h``, ``c(h, w)`` that of ``h``
followed by ``w`` and ``T(h)`` the number of distinct words seen after ``h``::

    P_n(w | h) = (c(h, w) + T(h) P_{n-1}(w | h')) / (c(h) + T(h))     (h' drops h's oldest token)
    P_n(w | h) = P_{n-1}(w | h')                                    when c(h) = 0
    P_0(w)     = 1 / vocab_size

Each level is a mixture of a distribution and the level below, so every order sums to one over
the vocabulary at every position (what ``tests/test_analysis_ngram.py`` checks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # odd: wrapping keys still spread


@dataclass(frozen=True, eq=False)
class _Level:
    """Counts of one order: sorted n-gram keys with their counts, sorted context keys with
    their counts and distinct followers (empty context for order 1: one key)."""

    gram_keys: np.ndarray = field(repr=False)
    gram_counts: np.ndarray = field(repr=False)
    context_keys: np.ndarray = field(repr=False)
    context_counts: np.ndarray = field(repr=False)
    context_types: np.ndarray = field(repr=False)


@dataclass(frozen=True, eq=False)
class NGramModel:
    """An interpolated Witten-Bell model of ``order`` (1: unigram mixed with uniform) over
    ``vocab_size`` ids, counted from one training array."""

    order: int
    vocab_size: int
    levels: tuple[_Level, ...] = field(repr=False)

    def truncated(self, order: int) -> NGramModel:
        """The same counts used up to ``order`` (no recounting)."""
        if not 1 <= order <= self.order:
            raise ValueError(f"order must be 1 to {self.order}, got {order}")
        return NGramModel(order=order, vocab_size=self.vocab_size, levels=self.levels[:order])

    def probabilities(self, history: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """P(target | history) for each row: ``history`` (n, k) holds the preceding ids, the
        most recent last, ``-1`` where there is none (a window's start); only its last
        ``order - 1`` columns are used. Returns float64 (n,)."""
        history = np.asarray(history, dtype=np.int64)
        targets = np.asarray(targets, dtype=np.int64)
        if history.ndim != 2 or targets.shape != (history.shape[0],):
            raise ValueError("history must be (n, k) and targets (n,)")
        p = np.full(targets.shape, 1.0 / self.vocab_size)
        for n, level in enumerate(self.levels, start=1):
            k = n - 1
            if k > history.shape[1]:
                break
            context = history[:, history.shape[1] - k :]
            known = (context >= 0).all(axis=1)
            ctx_key = _keys(context, self.vocab_size, k + 1)
            gram_key = _append(ctx_key, targets, self.vocab_size, k + 1)
            c_h, t_h = _lookup(
                level.context_keys, ctx_key, level.context_counts, level.context_types
            )
            c_hw = _lookup(level.gram_keys, gram_key, level.gram_counts)[0]
            seen = known & (c_h > 0)
            mixed = (c_hw + t_h * p) / np.maximum(c_h + t_h, 1)
            p = np.where(seen, mixed, p)
        return p

    def window_nll(self, windows: np.ndarray) -> float:
        """Total NLL in nats of every target of ``windows`` (m, T+1), each target conditioned
        only on the ids before it in its own window, as a trained model sees them."""
        windows = np.asarray(windows, dtype=np.int64)
        m, width = windows.shape
        k = self.order - 1
        # history[i, j, :] = the k ids before target j of window i (-1 before the window)
        padded = np.concatenate([np.full((m, k), -1, dtype=np.int64), windows[:, :-1]], axis=1)
        cols = np.arange(1, width)[:, None] + np.arange(k)[None, :]
        history = padded[:, cols].reshape(m * (width - 1), k)
        targets = windows[:, 1:].reshape(-1)
        return float(-np.log(self.probabilities(history, targets)).sum())


def fit_ngram(train: np.ndarray, *, order: int, vocab_size: int) -> NGramModel:
    """Count orders 1..``order`` of ``train`` (1-D ids, one stream).

    Raises:
        ValueError: order below 1, an empty array or an id outside the vocabulary.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    tokens = np.asarray(train, dtype=np.int64)
    if tokens.size == 0:
        raise ValueError("no training tokens")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(f"token ids must lie in [0, {vocab_size})")
    levels = [_count(tokens, n, vocab_size) for n in range(1, order + 1) if n <= tokens.size]
    return NGramModel(order=order, vocab_size=vocab_size, levels=tuple(levels))


def _count(tokens: np.ndarray, n: int, vocab_size: int) -> _Level:
    k = n - 1
    windows = np.lib.stride_tricks.sliding_window_view(tokens, n)  # (len - k, n), a view
    ctx_key = _keys(windows[:, :k], vocab_size, n)
    gram_key = _append(ctx_key, windows[:, k], vocab_size, n)
    gram_keys, first, gram_counts = np.unique(gram_key, return_index=True, return_counts=True)
    context_keys, context_counts = np.unique(ctx_key, return_counts=True)
    # Distinct followers of each context: the contexts of the distinct n-grams, counted.
    follower_ctx, types = np.unique(ctx_key[first], return_counts=True)
    assert np.array_equal(follower_ctx, context_keys)
    return _Level(gram_keys, gram_counts, context_keys, context_counts, types)


def _multiplier(vocab_size: int, order: int) -> np.uint64:
    exact = vocab_size**order < 2**64
    return np.uint64(vocab_size) if exact else _HASH_MULTIPLIER


def _keys(context: np.ndarray, vocab_size: int, order: int) -> np.ndarray:
    """One key per row of ``context`` (n, k); -1 entries give keys that are never looked up
    as seen (their rows are masked by the caller)."""
    mult = _multiplier(vocab_size, order)
    key = np.zeros(context.shape[0], dtype=np.uint64)
    for j in range(context.shape[1]):
        key = _append(key, context[:, j], vocab_size, order, mult=mult)
    return key


def _append(
    key: np.ndarray,
    token: np.ndarray,
    vocab_size: int,
    order: int,
    *,
    mult: np.uint64 | None = None,
) -> np.ndarray:
    m = _multiplier(vocab_size, order) if mult is None else mult
    with np.errstate(over="ignore"):
        return key * m + token.astype(np.uint64)


def _lookup(keys: np.ndarray, wanted: np.ndarray, *values: np.ndarray) -> list[np.ndarray]:
    """``values`` at the positions of ``wanted`` in sorted ``keys``, 0 where absent."""
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    found = keys[at] == wanted
    return [np.where(found, v[at], 0).astype(np.float64) for v in values]
