"""The weight average (study.training.ema) after a few steps, and that evaluation scores it."""

from __future__ import annotations

import pytest
import torch

from study.config import ModelConfig, TrainConfig
from study.models import build_model
from study.training.ema import WeightAverage, decay_at
from study.training.plan import StepPlan
from study.training.step import TrainStep

V, T = 300, 16


def test_average_follows_the_recurrence_after_a_few_steps() -> None:
    p = torch.zeros(3)
    ema = WeightAverage([p], decay=0.9)
    expected = torch.zeros(3)
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]):
        p.fill_(value)
        ema.update()
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * value
    torch.testing.assert_close(ema.average[0], expected)
    assert decay_at(0, 0.9) == pytest.approx(0.1) and decay_at(1000, 0.9) == 0.9
    with ema.swapped():
        torch.testing.assert_close(p, expected)
    assert torch.equal(p, torch.full((3,), 12.0))  # the trained weights are back


def test_train_step_keeps_an_average_of_its_weights() -> None:
    model_config = ModelConfig(n_layer=1, d_model=32, n_head=4, vocab_size=V, seq_len=T)
    config = TrainConfig(model=model_config, device="cpu", batch_size=4, lr=1e-2, ema_decay=0.5)
    torch.manual_seed(0)
    model = build_model(config.model)
    plan = StepPlan(compile=False, cuda_graph=False, ce_chunk=7, autocast=None, fused_adamw=False)
    tokens = torch.randint(0, V, (4000,), dtype=torch.int32)
    step = TrainStep(
        model, config, device=torch.device("cpu"), tokens=tokens, batch_size=4, plan=plan
    )
    assert step.ema is not None
    params = list(model.parameters())
    history = [[p.detach().clone() for p in params]]
    for _ in range(5):
        step(lr=1e-2, seq_len=T)
        history.append([p.detach().clone() for p in params])
    expected = history[0]
    for i, weights in enumerate(history[1:]):
        d = decay_at(i, 0.5)
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights, strict=True)]
    for avg, e, p in zip(step.ema.average, expected, params, strict=True):
        torch.testing.assert_close(avg, e)
        assert not torch.equal(avg, p)  # the average lags the weights
    assert (
        TrainStep(
            model,
            config.replace(ema_decay=0.0),
            device=torch.device("cpu"),
            tokens=tokens,
            batch_size=4,
            plan=plan,
        ).ema
        is None
    )
