"""The steps the table compares, one builder per column; each returns ``step() -> tokens``.

* (a) ``trainer_step``: the project's step exactly as trials build it (``study.training.step.TrainStep``
  with the plan ``plan_step`` picks for the device), or a ``Variant`` of that plan.
* (b) ``textbook(tuned=False)``: ``bench.textbook.TextbookGPT``, float32, eager, default AdamW.
* (c) ``textbook(tuned=True)``: the same module as a competent user runs it (``tuned_options``).
* (d) ``graphed``: (c) on CUDA with fused capturable AdamW and the whole step in one CUDA graph.

Every builder seeds the model's initialisation with 0 and samples batches from the same
on-device token array with the same sampler, so only the step differs between columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from bench.textbook import GraphedStep, TextbookGPT, textbook_step
from study.config import ModelConfig, TrainConfig
from study.models import build_model
from study.training.plan import plan_step
from study.training.schedule import lr_at
from study.training.step import Batches, TrainStep

Step = Callable[[], int]


@dataclass(frozen=True)
class Variant:
    """A trainer step under test: plan fields changed, another batch, an attention backend,
    Inductor settings patched while it compiles (``torch._inductor.config`` names)."""

    name: str
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch: int | None = None
    sdpa: str | None = None
    inductor: dict[str, Any] = dataclasses.field(default_factory=dict)


def trainer_step(
    mc: ModelConfig,
    *,
    device: torch.device,
    tokens: torch.Tensor,
    batch: int,
    variant: Variant | None = None,
) -> tuple[Step, str]:
    """Column (a): the trainer's step as ``study.training.trainer.train`` builds and calls it, and its
    plan in words."""
    config = TrainConfig(model=mc, device=device.type, batch_size=batch)
    torch.manual_seed(0)
    model = build_model(mc).to(device)
    model.train()
    plan = plan_step(config, device, model)
    if variant is not None and variant.plan:
        plan = dataclasses.replace(plan, **variant.plan)
    train_step = TrainStep(model, config, device=device, tokens=tokens, batch_size=batch, plan=plan)
    lr = lr_at(0.5, peak=config.lr, warmup_frac=config.warmup_frac)

    def step() -> int:
        n = train_step(lr=lr, seq_len=mc.seq_len)
        train_step.diverged()  # the trainer's per-step check
        return n

    return step, plan.describe()


def tuned_options(device: torch.device) -> dict[str, bool]:
    """What a competent user turns on for baseline (c) on this device."""
    if device.type == "cuda":
        return {"bf16": True, "compile": True, "fused": True}
    return {"bf16": False, "compile": False, "fused": False}  # CPU: compile measured slower


def _textbook_model(
    mc: ModelConfig,
    *,
    device: torch.device,
    tokens: torch.Tensor,
    batch: int,
) -> tuple[TextbookGPT, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    """The textbook module of ``mc``'s shape (seed 0) and its batch sampler."""
    torch.manual_seed(0)
    model = TextbookGPT(
        n_layer=mc.n_layer,
        d_model=mc.d_model,
        n_head=mc.n_head,
        vocab_size=mc.vocab_size,
        seq_len=mc.seq_len,
    ).to(device)
    batches = Batches(tokens, seed=0)

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batches.sample(batch, mc.seq_len)
        return x.contiguous(), y.contiguous()  # as nanoGPT's get_batch stacks them

    return model, sample


def _counting(run: Callable[[], object], tokens_per_step: int) -> Step:
    def step() -> int:
        run()
        return tokens_per_step

    return step


def textbook(
    mc: ModelConfig, *, device: torch.device, tokens: torch.Tensor, batch: int, tuned: bool
) -> Step:
    """Column (b) (``tuned=False``) or (c) (``tuned=True``)."""
    model, sample = _textbook_model(mc, device=device, tokens=tokens, batch=batch)
    opts = tuned_options(device) if tuned else {"bf16": False, "compile": False, "fused": False}
    return _counting(textbook_step(model, sample, device=device, **opts), batch * mc.seq_len)


def graphed(mc: ModelConfig, *, device: torch.device, tokens: torch.Tensor, batch: int) -> Step:
    """Column (d), CUDA only: the textbook module run by ``bench.textbook.GraphedStep``.

    Raises:
        ValueError: ``device`` is not a CUDA device.
    """
    model, sample = _textbook_model(mc, device=device, tokens=tokens, batch=batch)
    return _counting(GraphedStep(model, sample, device=device), batch * mc.seq_len)
