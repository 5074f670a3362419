"""Muon (study.training.muon) against a direct one-matrix implementation of the reference update
(../shared/RECIPES.md), the property it promises, and which parameter goes to which optimizer."""

from __future__ import annotations

import copy

import pytest
import torch

from study.config import ModelConfig, TrainConfig
from study.errors import UsageError
from study.models import build_model
from study.training.muon import Muon, orthogonalise
from study.training.optim import (
    ForeachAdamW,
    MuonAdamW,
    make_optimizer,
    muon_momentum_at,
    route_params,
)
from study.training.plan import StepPlan, plan_step
from study.training.step import TrainStep

V, T = 300, 16


def reference_muon_step(
    p: torch.Tensor, g: torch.Tensor, buf: torch.Tensor, *, lr: float, beta: float, wd: float
) -> None:
    """The reference update of one matrix, written out as RECIPES.md states it."""
    buf.lerp_(g, 1 - beta)
    u = g.lerp(buf, beta)
    x = u.bfloat16()
    if u.size(0) > u.size(1):
        x = x.T
    x = x / (x.norm() + 1e-7)
    for _ in range(5):
        a = x @ x.T
        x = 3.4445 * x + (-4.7750 * a + 2.0315 * a @ a) @ x
    if u.size(0) > u.size(1):
        x = x.T
    x = x.float() * max(1, p.size(0) / p.size(1)) ** 0.5
    p.mul_(1 - lr * wd)
    p.sub_(lr * x)


@pytest.mark.parametrize("wd", [0.0, 0.5])
def test_muon_matches_the_reference_update(wd: float) -> None:
    torch.manual_seed(0)
    shapes = [(32, 32), (32, 32), (96, 32), (32, 64)]  # a batched shape, tall and wide ones
    params = [torch.randn(s) * 0.1 for s in shapes]
    ref = [p.clone() for p in params]
    bufs = [torch.zeros_like(p) for p in ref]
    targets = [torch.randn(s) for s in shapes]
    muon = Muon(params, lr=0.03, momentum=0.9, weight_decay=wd)
    for _ in range(4):  # a fixed quadratic loss: the same "batch" each step
        for p, t in zip(params, targets, strict=True):
            p.grad = p.detach() - t
        muon.step()
        for p, t, buf in zip(ref, targets, bufs, strict=True):
            reference_muon_step(p, p - t, buf, lr=0.03, beta=0.9, wd=wd)
    for p, r in zip(params, ref, strict=True):
        torch.testing.assert_close(p, r, rtol=0, atol=1e-5)
        assert not torch.equal(p, torch.zeros_like(p))


@pytest.mark.parametrize("shape", [(64, 64), (192, 64), (64, 256)])
def test_orthogonalised_update_has_singular_values_near_one(shape: tuple[int, int]) -> None:
    torch.manual_seed(1)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k))
    g = u @ torch.diag(torch.logspace(-2, 0, k)) @ v.T  # singular values spread over 100x
    s = torch.linalg.svdvals(orthogonalise(g).float())
    # Muon's quintic trades exactness for speed: every singular value lands in about [0.68, 1.2]
    # (an exact orthogonalisation would give all ones; the input spans 0.01 to 1).
    assert s.min() > 0.65 and s.max() < 1.25


def test_batched_orthogonalisation_equals_one_at_a_time() -> None:
    torch.manual_seed(2)
    g = torch.randn(3, 48, 16)
    each = torch.stack([orthogonalise(m) for m in g])
    torch.testing.assert_close(orthogonalise(g).float(), each.float(), rtol=0, atol=1e-2)


def muon_config(**changes: object) -> TrainConfig:
    model = ModelConfig(n_layer=2, d_model=32, n_head=4, vocab_size=V, seq_len=T)
    config = TrainConfig(model=model, device="cpu", batch_size=4, lr=1e-2, optimizer="muon")
    return config.replace(**changes)


def test_routing_puts_hidden_matrices_on_muon_and_the_rest_on_adamw() -> None:
    model = build_model(muon_config(pos="learned").model)
    routes = route_params(model)
    names = {id(p): n for n, p in model.named_parameters()}  # type: ignore[attr-defined]
    muon = {names[id(p)] for p in routes["muon"]}
    assert muon == {
        f"transformer.blocks.{i}.{m}.weight"
        for i in range(2)
        for m in ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")
    }
    assert {names[id(p)] for p in routes["adam_decay"]} == {
        "transformer.wte.weight",  # also the tied head
        "transformer.wpe.weight",
    }
    assert all(p.dim() == 1 for p in routes["adam"]) and routes["adam"]
    total = sum(len(ps) for ps in routes.values())
    assert total == len(list(model.parameters()))
    optimizer = make_optimizer(model, muon_config(), fused=False, lr=1e-2)
    assert isinstance(optimizer, MuonAdamW)
    assert optimizer.adam.param_groups[0]["betas"] == (0.8, 0.95)
    assert optimizer.adam.param_groups[0]["eps"] == 1e-10


def test_momentum_warms_up_linearly() -> None:
    config = muon_config(muon_momentum=0.95, muon_momentum_warmup=100)
    assert muon_momentum_at(0, config) == pytest.approx(0.85)
    assert muon_momentum_at(50, config) == pytest.approx(0.90)
    assert muon_momentum_at(100, config) == 0.95
    assert muon_momentum_at(10_000, config) == 0.95


def test_muon_train_step_sets_its_own_lr_and_learns() -> None:
    config = muon_config(muon_lr=0.05, grad_clip=0.0)
    torch.manual_seed(0)
    model = build_model(config.model)
    before = copy.deepcopy(model)
    tokens = torch.arange(5000, dtype=torch.int32) % 7  # a pattern a few steps can learn
    plan = StepPlan(compile=False, cuda_graph=False, ce_chunk=7, autocast=None, fused_adamw=False)
    step = TrainStep(
        model, config, device=torch.device("cpu"), tokens=tokens, batch_size=4, plan=plan
    )
    step(lr=1e-2, seq_len=T)
    first = step.read_loss()[0]
    assert isinstance(step.optimizer, MuonAdamW)
    assert step.optimizer.muon.param_groups[0]["lr"] == pytest.approx(0.05)
    assert step.optimizer.adam.param_groups[0]["lr"] == pytest.approx(1e-2)
    for _ in range(15):
        step(lr=1e-2, seq_len=T)
    assert step.read_loss()[0] < first - 0.5
    moved = [
        not torch.equal(p, q) for p, q in zip(model.parameters(), before.parameters(), strict=True)
    ]
    assert all(moved)


def test_muon_train_step_equals_the_reference_on_a_fixed_batch() -> None:
    """The whole step with --optimizer muon against a hand-written one: the reference Muon on
    each hidden matrix, torch's AdamW (betas 0.8, 0.95, eps 1e-10) on the rest, the same batch
    every step, the lr ratio and the momentum warmup as the step applies them."""
    config = muon_config(muon_lr=0.04, muon_weight_decay=0.2, muon_momentum_warmup=3)
    config = config.replace(grad_clip=0.0, weight_decay=0.1)
    torch.manual_seed(0)
    model = build_model(config.model)
    reference = copy.deepcopy(model)
    initial = copy.deepcopy(model)
    tokens = torch.randint(0, V, (4 * (T + 1),), dtype=torch.int32)  # one window set: fixed
    plan = StepPlan(compile=False, cuda_graph=False, ce_chunk=0, autocast=None, fused_adamw=False)
    step = TrainStep(
        model, config, device=torch.device("cpu"), tokens=tokens, batch_size=4, plan=plan
    )
    routes = route_params(reference)
    adam = ForeachAdamW(  # torch's AdamW's arithmetic (tests/test_step.py), the same rounding
        [
            {"params": routes["adam_decay"], "weight_decay": config.weight_decay},
            {"params": routes["adam"], "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.8, 0.95),
        eps=1e-10,
    )
    bufs = [torch.zeros_like(p) for p in routes["muon"]]
    for i, lr in enumerate((1e-2, 1e-2, 5e-3, 5e-3)):
        step(lr=lr, seq_len=T)
        x, y = step._x[0], step._y[0]  # the batch the step drew
        reference.loss(x, y).backward()
        for group in adam.param_groups:
            group["lr"] = lr
        adam.step()
        adam.zero_grad()
        muon_lr = lr * config.muon_lr / config.lr
        beta = muon_momentum_at(i, config)
        with torch.no_grad():
            for p, buf in zip(routes["muon"], bufs, strict=True):
                assert p.grad is not None
                reference_muon_step(p, p.grad, buf, lr=muon_lr, beta=beta, wd=0.2)
                p.grad = None
    # The first steps agree to float rounding (1e-7); from there a bf16 rounding of the
    # Newton-Schulz input can fall the other way and grow by up to a few percent of an update.
    for p, q, p0 in zip(
        model.parameters(), reference.parameters(), initial.parameters(), strict=True
    ):
        moved = (q - p0).abs().max().item()
        assert moved > 1e-3
        assert (p - q).abs().max().item() < 0.05 * moved


def test_bad_muon_settings_are_refused() -> None:
    for changes in ({"optimizer": "sgd"}, {"muon_lr": 0.0}, {"muon_momentum": 1.0}):
        with pytest.raises(UsageError):
            muon_config(**changes).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_muon_cuda_graph_step_matches_eager_step() -> None:
    config = muon_config(device="cuda")
    device = torch.device("cuda")
    torch.manual_seed(0)
    graphed = build_model(config.model).to(device)
    eager = copy.deepcopy(graphed)
    tokens = torch.randint(0, V, (5000,), dtype=torch.int32, device=device)
    plan = plan_step(config, device, graphed)
    assert plan.cuda_graph
    a = TrainStep(graphed, config, device=device, tokens=tokens, batch_size=4, plan=plan)
    eager_plan = StepPlan(
        compile=False,
        cuda_graph=False,
        ce_chunk=plan.ce_chunk,
        autocast=plan.autocast,
        fused_adamw=True,
    )
    b = TrainStep(eager, config, device=device, tokens=tokens, batch_size=4, plan=eager_plan)
    for _ in range(8):  # warm-up steps, capture, replays
        a(lr=1e-3, seq_len=T)
        b(lr=1e-3, seq_len=T)
    assert a._graph is not None
    for p, q in zip(graphed.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=2e-2, atol=3e-3)
    assert a.read_loss()[0] == pytest.approx(b.read_loss()[0], rel=2e-2)
