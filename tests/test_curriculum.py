"""A real curriculum run trains at the scheduled lengths (the schedule itself: test_train.py).

The run's token embedding records the shape of every batch it embeds while training (the
embedding is the one module every architecture, and every way the step may be run, goes
through); ``seq_len_at`` is wrapped to record the budget fraction the trainer asked about. The
lengths are checked against the schedule computed here independently: 64, 128, 256 over the
halves of the first half of the budget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import study.training.setup as setup
import study.training.trainer as trainer
from study.config import ModelConfig, TrainConfig
from study.models import LanguageModel

pytestmark = pytest.mark.slow  # every test here starts processes or trains

FULL, BATCH, ACCUM = 256, 8, 2


def scheduled(frac: float) -> int:
    """64 until 1/4 of the budget, 128 until 1/2, then 256 (full by half-way)."""
    return 64 * 2 ** min(int(frac * 4), 2)


def record_training_shapes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """Make the trainer's models append the (rows, seq_len) of each training batch to a list."""
    shapes: list[tuple[int, ...]] = []
    real_build = setup.build_model

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        if module.training and torch.is_grad_enabled():  # training steps, not eval/sampling
            shapes.append(tuple(args[0].shape))

    def recording_build(config: ModelConfig) -> LanguageModel:
        model = real_build(config)
        embedding = next(m for m in model.modules() if isinstance(m, nn.Embedding))
        embedding.register_forward_pre_hook(hook)
        return model

    monkeypatch.setattr(setup, "build_model", recording_build)
    return shapes


def test_curriculum_run_trains_at_scheduled_lengths(
    tinystories: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[float, int]] = []
    shapes = record_training_shapes(monkeypatch)
    real_seq_len_at = trainer.seq_len_at

    def recording_seq_len_at(frac: float, *, full: int, curriculum: bool) -> int:
        length = real_seq_len_at(frac, full=full, curriculum=curriculum)
        asked.append((frac, length))
        return length

    monkeypatch.setattr(trainer, "seq_len_at", recording_seq_len_at)
    config = TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=1024, seq_len=FULL),
        budget=6.0,
        data=str(tinystories),
        device="cpu",
        batch_size=BATCH,
        lr=1e-2,
        grad_accum=ACCUM,
        curriculum=True,
        eval_tokens=2048,
        curve_points=2,
        sample_tokens=4,
    )
    result = trainer.train(config, cache_dir=cache_dir, out=None)

    assert len(asked) == result.steps
    assert len(shapes) == ACCUM * result.steps
    fracs = [frac for frac, _ in asked]
    assert fracs == sorted(fracs) and fracs[-1] > 0.5
    for i, (frac, length) in enumerate(asked):
        assert length == scheduled(frac), (frac, length)
        rows = BATCH * FULL // length  # tokens per micro-batch held constant
        assert shapes[ACCUM * i] == shapes[ACCUM * i + 1] == (rows, length)
    lengths = [length for _, length in asked]
    # Every step matched the schedule above; the first and last stages are always reached
    # (the middle one too unless one step outlasted its 1.5 s, which no assert depends on).
    assert lengths[0] == 64 and lengths[-1] == FULL and set(lengths) <= {64, 128, 256}
    assert lengths == sorted(lengths)
    assert result.tokens_seen == result.steps * ACCUM * BATCH * FULL


def test_no_curriculum_trains_at_full_length(
    tinystories: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes = record_training_shapes(monkeypatch)
    config = TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=1024, seq_len=128),
        budget=1.5,
        data=str(tinystories),
        device="cpu",
        batch_size=4,
        lr=1e-2,
        eval_tokens=512,
        curve_points=1,
        sample_tokens=2,
    )
    result = trainer.train(config, cache_dir=cache_dir, out=None)
    assert len(shapes) == result.steps and set(shapes) == {(4, 128)}
