"""The training step's optimizers: AdamW (PyTorch's fused one on CUDA, a torch.optim-free one
elsewhere), or Muon on the hidden matrices with AdamW on the rest (``study.training.muon``)."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import nn

from study.config import TrainConfig
from study.models import LanguageModel
from study.training.muon import Muon

MUON_MOMENTUM_START = 0.85  # warmed to TrainConfig.muon_momentum (RECIPES.md)


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


class MuonAdamW:
    """Muon on the hidden matrices and AdamW on the rest, stepped as one optimizer (the parts of
    ``torch.optim.Optimizer`` that ``GradScaler`` and the training step use)."""

    def __init__(self, muon: Muon, adam: torch.optim.AdamW | ForeachAdamW) -> None:
        self.muon = muon
        self.adam = adam
        self.param_groups = adam.param_groups + muon.param_groups
        self.state: dict[Any, Any] = {}

    def step(self) -> None:
        self.adam.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adam.zero_grad(set_to_none=set_to_none)
        self.muon.zero_grad(set_to_none=set_to_none)


Optimizer = torch.optim.AdamW | ForeachAdamW | MuonAdamW


def route_params(model: LanguageModel) -> dict[str, list[torch.Tensor]]:
    """Which optimizer each parameter gets with ``optimizer`` muon: ``muon`` the hidden 2-D
    matrices; ``adam_decay`` the embeddings (value embedding tables too) and the output head
    (2-D, decayed as by AdamW alone); ``adam`` the vectors and scalars (norm gains, the
    embedding shortcut's and value embeddings' lambdas), never decayed."""
    module = cast(nn.Module, model)
    embedding = {
        id(p) for m in module.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    embedding.add(id(model.head_weight))
    routes: dict[str, list[torch.Tensor]] = {"muon": [], "adam_decay": [], "adam": []}
    for p in module.parameters():
        if p.dim() < 2:
            routes["adam"].append(p)
        elif id(p) in embedding or p.dim() != 2:
            routes["adam_decay"].append(p)
        else:
            routes["muon"].append(p)
    return routes


def make_optimizer(
    model: LanguageModel, config: TrainConfig, *, fused: bool, lr: float | torch.Tensor
) -> Optimizer:
    """AdamW with weight decay on matrices only: PyTorch's fused one (capturable, with a tensor
    lr, for CUDA graphs) when ``fused``, else ``ForeachAdamW``. With ``config.optimizer`` muon:
    ``MuonAdamW``, Muon on ``route_params``' hidden matrices at ``muon_lr`` (a tensor of its
    own when ``lr`` is one; the group's ``lr_scale`` keeps it at ``muon_lr / lr`` of the
    schedule), AdamW with the records' betas (0.8, 0.95) and eps 1e-10 on the rest."""
    if config.optimizer == "muon":
        return _make_muon(model, config, fused=fused, lr=lr)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups: list[dict[str, Any]] = [{"params": decay, "weight_decay": config.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return _adamw(groups, fused=fused, lr=lr, betas=(config.beta1, config.beta2), eps=1e-8)


def _adamw(
    groups: list[dict[str, Any]],
    *,
    fused: bool,
    lr: float | torch.Tensor,
    betas: tuple[float, float],
    eps: float,
) -> torch.optim.AdamW | ForeachAdamW:
    if not fused:
        if isinstance(lr, torch.Tensor):
            raise ValueError("ForeachAdamW takes a float learning rate")
        return ForeachAdamW(groups, lr=lr, betas=betas, eps=eps)
    return torch.optim.AdamW(
        groups, lr=lr, betas=betas, eps=eps, fused=True, capturable=isinstance(lr, torch.Tensor)
    )


def _make_muon(
    model: LanguageModel, config: TrainConfig, *, fused: bool, lr: float | torch.Tensor
) -> MuonAdamW:
    routes = route_params(model)
    groups: list[dict[str, Any]] = [
        {"params": ps, "weight_decay": config.weight_decay if name == "adam_decay" else 0.0}
        for name, ps in routes.items()
        if name != "muon" and ps
    ]
    adam = _adamw(groups, fused=fused, lr=lr, betas=(0.8, 0.95), eps=1e-10)
    momentum: float | torch.Tensor = MUON_MOMENTUM_START
    muon_lr: float | torch.Tensor = config.muon_lr
    if isinstance(lr, torch.Tensor):
        momentum = torch.tensor(momentum, dtype=torch.float32, device=lr.device)
        muon_lr = torch.tensor(config.muon_lr, dtype=torch.float32, device=lr.device)
    muon = Muon(
        routes["muon"], lr=muon_lr, momentum=momentum, weight_decay=config.muon_weight_decay
    )
    muon.param_groups[0]["lr_scale"] = config.muon_lr / config.lr
    return MuonAdamW(muon, adam)


def muon_momentum_at(step: int, config: TrainConfig) -> float:
    """Muon's momentum at optimizer step ``step`` (from 0): linear from 0.85 to
    ``config.muon_momentum`` over the first ``config.muon_momentum_warmup`` steps."""
    if step >= config.muon_momentum_warmup:
        return config.muon_momentum
    frac = step / config.muon_momentum_warmup
    return MUON_MOMENTUM_START + frac * (config.muon_momentum - MUON_MOMENTUM_START)


def set_schedule(optimizer: Optimizer, *, lr: float, step: int, config: TrainConfig) -> None:
    """Set each group's learning rate to ``lr`` times its ``lr_scale`` (and Muon's momentum
    for ``step``): in place where they are device tensors (a captured graph reads them)."""
    done: set[int] = set()
    for group in optimizer.param_groups:
        _assign(group, "lr", lr * group.get("lr_scale", 1.0), done)
        if isinstance(optimizer, MuonAdamW) and group is optimizer.muon.param_groups[0]:
            _assign(group, "momentum", muon_momentum_at(step, config), done)


def _assign(group: dict[str, Any], key: str, value: float, done: set[int]) -> None:
    current = group[key]
    if isinstance(current, torch.Tensor):
        if id(current) not in done:  # groups may share one tensor
            current.fill_(value)
            done.add(id(current))
    else:
        group[key] = value
