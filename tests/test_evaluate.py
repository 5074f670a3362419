"""Held-out evaluation (study.training.evaluate): the fixed windows, NLL per token and bits per byte."""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from torch import nn

from study.config import ModelConfig
from study.errors import UsageError
from study.models import build_model
from study.training.evaluate import eval_windows, evaluate


class Uniform(nn.Module):
    """Predicts every token with probability 1/V, so NLL per token is exactly ln V."""

    nll_is_bound = False

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab

    def nll_sum(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.tensor(y.numel() * math.log(self.vocab))


def test_bits_per_byte_by_hand() -> None:
    vocab = 8
    token_bytes = torch.tensor([1, 1, 2, 3, 1, 4, 1, 2])  # bytes each id decodes to
    tokens = np.array([0, 3, 5, 2, 1, 7, 4, 6, 3], dtype=np.uint16)
    windows = torch.from_numpy(eval_windows(tokens, n_tokens=8, seq_len=4))
    assert windows.tolist() == [[0, 3, 5, 2, 1], [1, 7, 4, 6, 3]]
    loss, bpb = evaluate(
        Uniform(vocab),  # type: ignore[arg-type]  # only nll_sum and nll_is_bound are read
        windows,
        token_bytes=token_bytes,
        batch_size=1,
        amp=nullcontext,
    )
    assert loss == pytest.approx(math.log(vocab))
    # targets: 3 5 2 1 | 7 4 6 3 -> bytes 3+4+2+1 + 2+1+1+3 = 17 over 8 tokens
    assert bpb == pytest.approx(8 * math.log(vocab) / (math.log(2) * 17))


def test_eval_windows_sizes() -> None:
    tokens = np.arange(100, dtype=np.uint16)
    assert eval_windows(tokens, n_tokens=30, seq_len=10).shape == (3, 11)
    assert eval_windows(tokens, n_tokens=5, seq_len=10).shape == (1, 11)  # at least one
    assert eval_windows(tokens, n_tokens=10_000, seq_len=10).shape == (9, 11)  # as many as fit
    with pytest.raises(UsageError, match="held-out"):
        eval_windows(tokens[:10], n_tokens=100, seq_len=10)


def test_evaluate_is_the_models_nll_and_keeps_its_mode() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=300, seq_len=8))
    windows = torch.randint(0, 300, (5, 9))
    model.train()
    loss, _ = evaluate(model, windows, token_bytes=torch.ones(300), batch_size=2, amp=nullcontext)
    assert model.training
    with torch.no_grad():
        expected = model.loss(windows[:, :-1], windows[:, 1:]).item()
    assert loss == pytest.approx(expected, rel=1e-5)
