"""AdamW for the training step: PyTorch's fused one on CUDA, a torch.optim-free one elsewhere."""

from __future__ import annotations

import math
from typing import Any

import torch

from study.config import TrainConfig
from study.models import LanguageModel


class ForeachAdamW:
    """AdamW (decoupled weight decay, bias correction, eps outside the root) as PyTorch's foreach
    implementation computes it, without ``torch.optim``: building any ``torch.optim`` optimizer
    imports ``torch._dynamo``, 1.6 s on the 2-core machine, a fixed cost of every CPU trial that
    nothing else there needs. Duck-types what ``GradScaler`` and the step use."""

    def __init__(
        self,
        groups: list[dict[str, Any]],
        *,
        lr: float,
        betas: tuple[float, float],
        eps: float = 1e-8,
    ) -> None:
        self.param_groups = [{"lr": lr, "betas": betas, "eps": eps, **g} for g in groups]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}
        self._steps = 0

    @torch.no_grad()
    def step(self) -> None:
        self._steps += 1
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if p not in self.state:
                    self.state[p] = {
                        "exp_avg": torch.zeros_like(p),
                        "exp_avg_sq": torch.zeros_like(p),
                    }
            exp_avg = [self.state[p]["exp_avg"] for p in params]
            exp_avg_sq = [self.state[p]["exp_avg_sq"] for p in params]
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            torch._foreach_lerp_(exp_avg, grads, 1 - beta1)
            torch._foreach_mul_(exp_avg_sq, beta2)
            torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - beta2)
            bias1 = 1 - beta1**self._steps
            bias2 = 1 - beta2**self._steps
            denom = torch._foreach_sqrt(exp_avg_sq)
            torch._foreach_div_(denom, math.sqrt(bias2))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, exp_avg, denom, -lr / bias1)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()


def make_optimizer(
    model: LanguageModel, config: TrainConfig, *, fused: bool, lr: float | torch.Tensor
) -> torch.optim.AdamW | ForeachAdamW:
    """AdamW with weight decay on matrices only: PyTorch's fused one (capturable, with a tensor
    lr, for CUDA graphs) when ``fused``, else ``ForeachAdamW``."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    betas = (config.beta1, config.beta2)
    if not fused:
        if isinstance(lr, torch.Tensor):
            raise ValueError("ForeachAdamW takes a float learning rate")
        return ForeachAdamW(groups, lr=lr, betas=betas)
    return torch.optim.AdamW(
        groups, lr=lr, betas=betas, fused=True, capturable=isinstance(lr, torch.Tensor)
    )
