"""Muon for the hidden matrices (``../shared/RECIPES.md``, KellerJordan/Muon), capturable.

The update of each 2-D matrix: Nesterov momentum (``buf.lerp_(g, 1 - beta)``,
``u = g.lerp(buf, beta)``), ``u`` approximately orthogonalised by 5 Newton-Schulz steps in bf16,
scaled by ``max(1, rows / cols) ** 0.5``, decoupled weight decay ``p *= 1 - lr * wd``, then
``p -= lr * u``. What this implementation adds to the reference: matrices of one shape share one
stacked momentum buffer and are orthogonalised in one batched call (a tiny model's step is bound
by kernel launches, not arithmetic), and the learning rate and momentum may be device tensors
updated in place, so the whole step can be captured in a CUDA graph and replayed.
"""

from __future__ import annotations

from typing import Any

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def orthogonalise(g: torch.Tensor, *, steps: int = NS_STEPS) -> torch.Tensor:
    """Approximately ``U V^T`` of ``g = U S V^T`` by Newton-Schulz in bf16, for a matrix
    (rows, cols) or a stack of them (n, rows, cols); returned in bf16, shaped as ``g``."""
    a, b, c = NS_COEFFS
    x = g.bfloat16()
    tall = g.size(-2) > g.size(-1)
    if tall:  # iterate on the wide form: X X^T is the smaller Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.mT if tall else x


class Muon:
    """Muon over ``params`` (2-D tensors). ``lr`` and ``momentum`` are floats or 0-dim device
    tensors (for a CUDA graph: fill them in place between replays). Duck-types the parts of
    ``torch.optim.Optimizer`` that ``GradScaler`` and the training step use."""

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float | torch.Tensor,
        momentum: float | torch.Tensor = 0.95,
        weight_decay: float = 0.0,
    ) -> None:
        if any(p.dim() != 2 for p in params):
            raise ValueError("Muon takes 2-D parameters only")
        self.param_groups: list[dict[str, Any]] = [
            {"params": params, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        ]
        self.state: dict[Any, dict[str, torch.Tensor]] = {}
        by_shape: dict[tuple[int, int], list[torch.Tensor]] = {}
        for p in params:
            by_shape.setdefault((p.size(0), p.size(1)), []).append(p)
        self._shapes = list(by_shape.items())

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, beta, wd = group["lr"], group["momentum"], group["weight_decay"]
        for shape, params in self._shapes:
            if any(p.grad is None for p in params):
                continue
            grads = torch.stack([p.grad for p in params])  # type: ignore[misc]  # (n, rows, cols)
            if shape not in self.state:
                self.state[shape] = {"buf": torch.zeros_like(grads)}
            buf = self.state[shape]["buf"]
            buf.lerp_(grads, 1 - beta)
            update = orthogonalise(grads.lerp_(buf, beta))  # Nesterov
            scale = max(1.0, shape[0] / shape[1]) ** 0.5
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd)
            step = update.to(params[0].dtype) * (-lr * scale)
            torch._foreach_add_(params, list(step.unbind(0)))

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()
