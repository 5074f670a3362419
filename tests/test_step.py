"""The fast training step (study.training.step) computes what the plain one does.

The fused loss against the model's own, a whole ``TrainStep`` against a hand-written step
(forward, backward, clip, AdamW) on the same windows, and the plan per device. The levers alone:
tests/test_loss.py (the fused head), tests/test_optim.py (the torch.optim-free AdamW).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from study.config import ModelConfig, TrainConfig
from study.device import cpu_has_bf16
from study.models import build_model
from study.training.plan import StepPlan, plan_step
from study.training.step import Batches, TrainStep, make_loss

V, T = 300, 16
EAGER = StepPlan(compile=False, cuda_graph=False, ce_chunk=7, autocast=None, fused_adamw=False)


def small_config(**changes: object) -> TrainConfig:
    model = ModelConfig(n_layer=2, d_model=32, n_head=4, vocab_size=V, seq_len=T)
    return TrainConfig(model=model, device="cpu", batch_size=4, lr=1e-2).replace(**changes)


def test_fused_loss_and_gradients_match_the_model() -> None:
    torch.manual_seed(0)
    model = build_model(small_config().model)
    x, y = torch.randint(0, V, (2, 3, T))
    ref = model.loss(x, y)
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    loss = make_loss(model, EAGER)(x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert model.nll_sum(x, y).item() == pytest.approx(ref.item() * y.numel(), rel=1e-5)


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_train_step_equals_a_hand_written_step(grad_accum: int) -> None:
    config = small_config(grad_accum=grad_accum, grad_clip=0.5)
    torch.manual_seed(0)
    model = build_model(config.model)
    reference = copy.deepcopy(model)
    initial = copy.deepcopy(model)
    tokens = torch.randint(0, V, (5000,), dtype=torch.int32)
    step = TrainStep(
        model, config, device=torch.device("cpu"), tokens=tokens, batch_size=4, plan=EAGER
    )
    windows = Batches(tokens, seed=config.seed)  # the same stream of windows
    decay = [p for p in reference.parameters() if p.dim() >= 2]
    no_decay = [p for p in reference.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(config.beta1, config.beta2),
    )
    losses = []
    for lr in (1e-2, 5e-3, 2e-3):
        assert step(lr=lr, seq_len=T) == 4 * T * grad_accum
        x, y = windows.sample(4 * grad_accum, T)
        total = 0.0
        for i in range(grad_accum):
            loss = reference.loss(x[i * 4 : (i + 1) * 4], y[i * 4 : (i + 1) * 4])
            (loss / grad_accum).backward()
            total += loss.item()
        losses.append(total / grad_accum)
        torch.nn.utils.clip_grad_norm_(reference.parameters(), config.grad_clip)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        opt.zero_grad()
    # Adam divides by the root of tiny second moments: float rounding shows up a little.
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=3e-5)
    moved = max(
        (p - q).abs().max().item()
        for p, q in zip(model.parameters(), initial.parameters(), strict=True)
    )
    assert moved > 1e-3  # three real updates, far beyond the tolerance
    mean, bad = step.read_loss()
    assert mean == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert not bad and not step.diverged()
    assert math.isnan(step.read_loss()[0])  # read resets


def test_train_step_flags_divergence() -> None:
    config = small_config()
    model = build_model(config.model)
    with torch.no_grad():
        model.head_weight[0, 0] = float("nan")
    tokens = torch.randint(0, V, (5000,), dtype=torch.int32)
    step = TrainStep(
        model, config, device=torch.device("cpu"), tokens=tokens, batch_size=4, plan=EAGER
    )
    step(lr=1e-3, seq_len=T)
    assert step.diverged()
    assert step.read_loss()[1]


def test_curriculum_lengths_keep_tokens_per_step() -> None:
    config = small_config(
        model=ModelConfig(n_layer=1, d_model=32, n_head=4, vocab_size=V, seq_len=64)
    )
    model = build_model(config.model)
    tokens = torch.randint(0, V, (5000,), dtype=torch.int32)
    step = TrainStep(
        model, config, device=torch.device("cpu"), tokens=tokens, batch_size=4, plan=EAGER
    )
    assert [step(lr=1e-3, seq_len=s) for s in (16, 32, 64)] == [256, 256, 256]
    assert step.rows_at(16) == 16 and step.rows_at(64) == 4


def test_plans_per_device() -> None:
    config = small_config()
    model = build_model(config.model)
    cpu = plan_step(config, torch.device("cpu"), model)
    assert not cpu.cuda_graph and not cpu.fused_adamw
    assert cpu.ce_chunk > 0 and not cpu.compile
    assert cpu.autocast is (torch.bfloat16 if cpu_has_bf16() else None)
    assert plan_step(config.replace(precision="fp32"), torch.device("cpu"), model).autocast is None
    cuda = plan_step(config, torch.device("cuda"), model)  # a plan needs no device present
    assert cuda.cuda_graph and cuda.compile and cuda.fused_adamw
    assert cuda.autocast is torch.bfloat16 and cuda.ce_chunk > 0
    assert not plan_step(config.replace(precision="fp16"), torch.device("cuda"), model).cuda_graph
    assert not plan_step(config.replace(compile=False), torch.device("cuda"), model).compile
    lstm = build_model(ModelConfig(arch="lstm", n_layer=1, d_model=32, vocab_size=V, seq_len=T))
    plan = plan_step(config, torch.device("cuda"), lstm)
    assert plan.ce_chunk == 0 and not plan.cuda_graph  # only the GPT's step is fused


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_step_matches_eager_step() -> None:
    config = small_config(device="cuda")
    device = torch.device("cuda")
    torch.manual_seed(0)
    graphed = build_model(config.model).to(device)
    eager = copy.deepcopy(graphed)
    tokens = torch.randint(0, V, (5000,), dtype=torch.int32, device=device)
    plan = plan_step(config, device, graphed)
    a = TrainStep(graphed, config, device=device, tokens=tokens, batch_size=4, plan=plan)
    b = TrainStep(
        eager,
        config,
        device=device,
        tokens=tokens,
        batch_size=4,
        plan=StepPlan(
            compile=False,
            cuda_graph=False,
            ce_chunk=plan.ce_chunk,
            autocast=plan.autocast,
            fused_adamw=True,
        ),
    )
    for _ in range(8):  # warm-up steps, capture, replays
        a(lr=1e-3, seq_len=T)
        b(lr=1e-3, seq_len=T)
    for p, q in zip(graphed.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=2e-2, atol=2e-3)
    assert a.read_loss()[0] == pytest.approx(b.read_loss()[0], rel=2e-2)
