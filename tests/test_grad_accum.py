"""Gradient accumulation: K micro-batches of B rows give the gradient of one batch of K x B rows.

The production path is tested: ``TrainStep`` with ``grad_accum`` K against ``TrainStep`` with one
micro-batch of K x B rows (both draw the same windows from the same seed), its gradients read at
the optimizer step, and ``backward_micro_batches`` (the loop ``TrainStep`` runs) under a
gradient scaler.
"""

from __future__ import annotations

import copy
import json
import math
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from study.config import ModelConfig, TrainConfig
from study.models import LanguageModel, build_model
from study.training.plan import StepPlan
from study.training.step import TrainStep, backward_micro_batches
from study.training.trainer import train

B, K, T, V = 3, 4, 16, 300


def make(arch: str) -> tuple[LanguageModel, TrainConfig, torch.Tensor]:
    torch.manual_seed(0)
    config = TrainConfig(
        model=ModelConfig(arch=arch, n_layer=2, d_model=32, n_head=4, vocab_size=V, seq_len=T),
        device="cpu",
        lr=1e-3,
        grad_clip=0.0,
    )
    tokens = torch.randint(0, V, (5000,), dtype=torch.int32)
    return build_model(config.model), config, tokens


def step_grads(
    model: LanguageModel,
    config: TrainConfig,
    tokens: torch.Tensor,
    *,
    rows: int,
    grad_accum: int,
    autocast: torch.dtype | None = None,
) -> tuple[dict[str, torch.Tensor], float]:
    """The gradient one ``TrainStep`` hands its optimizer, and the step's mean loss."""
    model = copy.deepcopy(model)
    plan = StepPlan(
        compile=False,
        cuda_graph=False,
        ce_chunk=7 if model.step_fusable else 0,
        autocast=autocast,
        fused_adamw=False,
    )
    step = TrainStep(
        model,
        config.replace(grad_accum=grad_accum),
        device=torch.device("cpu"),
        tokens=tokens,
        batch_size=rows,
        plan=plan,
    )
    named = dict(model.named_parameters())  # type: ignore[attr-defined]
    seen: dict[str, torch.Tensor] = {}
    real_step = step.optimizer.step

    def record() -> None:
        seen.update({n: p.grad.clone() for n, p in named.items() if p.grad is not None})
        real_step()

    step.optimizer.step = record  # type: ignore[method-assign]
    assert step(lr=1e-3, seq_len=T) == rows * T * grad_accum
    assert len(seen) == len(named)
    loss, bad = step.read_loss()
    assert not bad
    return seen, loss


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
@pytest.mark.slow
def test_accumulated_gradient_equals_big_batch(arch: str) -> None:
    model, config, tokens = make(arch)
    accumulated, micro_loss = step_grads(model, config, tokens, rows=B, grad_accum=K)
    big, big_loss = step_grads(model, config, tokens, rows=K * B, grad_accum=1)
    assert micro_loss == pytest.approx(big_loss, rel=1e-5)
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=1e-4, atol=1e-6)
    # Not trivially equal: one micro-batch alone has a clearly different gradient.
    first, _ = step_grads(model, config, tokens, rows=B, grad_accum=1)
    difference = sum((first[n] - big[n]).norm() for n in big)
    assert difference > 1e-2 * sum(big[n].norm() for n in big)


def test_accumulation_under_autocast() -> None:
    """bf16 autocast: the same equivalence, to bf16 tolerance."""
    model, config, tokens = make("gpt")
    accumulated, _ = step_grads(
        model, config, tokens, rows=B, grad_accum=K, autocast=torch.bfloat16
    )
    big, _ = step_grads(model, config, tokens, rows=K * B, grad_accum=1, autocast=torch.bfloat16)
    for name in big:
        torch.testing.assert_close(accumulated[name], big[name], rtol=5e-2, atol=5e-3)


def test_accumulation_scales_with_the_grad_scaler() -> None:
    """With a gradient scaler (fp16's path), accumulated gradients are the big batch's times the
    scale, so unscaling before the step gives the same update."""
    model, _, tokens = make("gpt")
    window = tokens[: K * B * (T + 1)].long().view(K * B, T + 1)
    x, y = window[:, :-1], window[:, 1:]
    scale = 1024.0
    scaler = torch.amp.GradScaler("cpu", init_scale=scale)

    def grads(xs: torch.Tensor, ys: torch.Tensor, **kw: object) -> dict[str, torch.Tensor]:
        m = copy.deepcopy(model)
        backward_micro_batches(m.loss, xs, ys, amp=nullcontext, **kw)  # type: ignore[arg-type]
        return {n: p.grad.clone() for n, p in m.named_parameters()}  # type: ignore[attr-defined]

    scaled = grads(x.unflatten(0, (K, B)), y.unflatten(0, (K, B)), scale=scaler.scale)
    big = grads(x[None], y[None])
    for name in big:
        torch.testing.assert_close(scaled[name] / scale, big[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_run_with_grad_accum_counts_tokens(tinystories: Path, cache_dir: Path) -> None:
    config = TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=1024, seq_len=32),
        budget=3.0,
        data=str(tinystories),
        device="cpu",
        batch_size=8,
        lr=1e-2,
        grad_accum=3,
        eval_tokens=2048,
        curve_points=2,
        sample_tokens=4,
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
