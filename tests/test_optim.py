"""The torch.optim-free AdamW (study.training.optim) against ``torch.optim.AdamW``."""

from __future__ import annotations

import pytest
import torch

from study.config import ModelConfig, TrainConfig
from study.models import build_model
from study.training.optim import ForeachAdamW, make_optimizer


def test_foreach_adamw_matches_torch() -> None:
    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(4, requires_grad=True)]
    b = [p.detach().clone().requires_grad_() for p in a]
    ref = torch.optim.AdamW(
        [{"params": [a[0]], "weight_decay": 0.1}, {"params": [a[1]], "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.9, 0.95),
    )
    ours = ForeachAdamW(
        [{"params": [b[0]], "weight_decay": 0.1}, {"params": [b[1]], "weight_decay": 0.0}],
        lr=1e-2,
        betas=(0.9, 0.95),
    )
    for i in range(12):
        for p, q in zip(a, b, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        if i == 6:  # the trainer changes the learning rate every step
            for opt in (ref, ours):
                for group in opt.param_groups:
                    group["lr"] = 3e-3
        ref.step()
        ours.step()
    for p, q in zip(a, b, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    ours.zero_grad()
    assert all(q.grad is None for q in b)


def test_make_optimizer_decays_matrices_only() -> None:
    model = build_model(ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=300, seq_len=8))
    config = TrainConfig(weight_decay=0.05)
    optimizer = make_optimizer(model, config, fused=False, lr=1e-3)
    assert isinstance(optimizer, ForeachAdamW)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="float"):
        make_optimizer(model, config, fused=False, lr=torch.tensor(1e-3))
