"""Gradient accumulation: K micro-batches of B rows give the gradient of one batch of K x B rows.

The trainer's own micro-batch loop (``study.trainer.accumulate``) is tested, fed from a batch
source that serves fixed rows in order, so both ways see exactly the same windows.
"""

from __future__ import annotations

import copy
import json
import math
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from study.config import ModelConfig, TrainConfig
from study.models import build_model
from study.trainer import Batches, accumulate, train

B, K, T, V = 3, 4, 16, 300


class Served(Batches):
    """Serves the rows of fixed (x, y) tensors in order instead of random windows."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y, self.next = x, y, 0

    def sample(self, batch: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = slice(self.next, self.next + batch)
        self.next += batch
        assert self.next <= self.x.size(0), "served more rows than were prepared"
        return self.x[rows, :seq_len], self.y[rows, :seq_len]


def grads(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, rows: int, grad_accum: int,
    scaler: torch.amp.GradScaler | None = None,
    amp: Any = nullcontext,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    model = copy.deepcopy(model)
    scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)
    losses = accumulate(model, Served(*data), rows=rows, seq_len=T, grad_accum=grad_accum,
                        amp=amp, scaler=scaler)
    out = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert len(out) == len(list(model.parameters()))
    return out, losses


def make(arch: str) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, n_layer=2, d_model=32, n_head=4, vocab_size=V,
                                    seq_len=T))
    window = torch.randint(0, V, (K * B, T + 1))
    return model, (window[:, :-1], window[:, 1:])


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_accumulated_gradient_equals_big_batch(arch: str) -> None:
    model, data = make(arch)
    accumulated, micro_losses = grads(model, data, rows=B, grad_accum=K)
    big, big_loss = grads(model, data, rows=K * B, grad_accum=1)
    assert micro_losses.shape == (K,) and big_loss.shape == (1,)
    torch.testing.assert_close(micro_losses.mean(), big_loss[0], rtol=1e-5, atol=1e-6)
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-4, atol=1e-6)
    # Not trivially equal: one micro-batch alone has a clearly different gradient.
    first, _ = grads(model, data, rows=B, grad_accum=1)
    difference = sum((first[n] - big[n]).norm() for n in big)
    assert difference > 1e-2 * sum(big[n].norm() for n in big)


def test_accumulation_scales_with_the_grad_scaler() -> None:
    """With a gradient scaler (fp16's path), accumulated gradients are the big batch's times the
    scale, so unscaling before the step gives the same update."""
    model, data = make("gpt")
    scale = 1024.0
    scaled, _ = grads(model, data, rows=B, grad_accum=K,
                      scaler=torch.amp.GradScaler("cpu", init_scale=scale))
    big, _ = grads(model, data, rows=K * B, grad_accum=1)
    for name in big:
        torch.testing.assert_close(scaled[name] / scale, big[name], rtol=1e-4, atol=1e-6)


def test_accumulation_under_autocast() -> None:
    """bf16 autocast: the same equivalence, to bf16 tolerance."""
    model, data = make("gpt")

    def amp() -> AbstractContextManager[Any]:
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)

    accumulated, _ = grads(model, data, rows=B, grad_accum=K, amp=amp)
    big, _ = grads(model, data, rows=K * B, grad_accum=1, amp=amp)
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=5e-2, atol=5e-3)


def test_run_with_grad_accum_counts_tokens(tinystories: Path, cache_dir: Path) -> None:
    config = TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=1024, seq_len=32),
        budget=3.0, data=str(tinystories), device="cpu", batch_size=8, lr=1e-2, grad_accum=3,
        eval_tokens=2048, curve_points=2, curve_eval_tokens=512, sample_tokens=4,
    )
    lines: list[str] = []

    class Sink:
        def write(self, s: str) -> None:
            lines.append(s)

        def flush(self) -> None:
            pass

    result = train(config, cache_dir=cache_dir, events=Sink(), out=None)  # type: ignore[arg-type]
    assert result.tokens_seen == result.steps * 3 * 8 * 32  # K micro-batches per step
    assert math.isfinite(result.val_loss)
    progress = [json.loads(s) for s in lines if '"progress"' in s]
    assert progress and all(math.isfinite(p["train_loss"]) for p in progress)
