"""The compiled trunk of the training step: the model up to its final norm, either compiled whole
or by regions (the repeated block compiled once and reused by every layer).

Regional compilation (PyTorch's recipe "Reducing torch.compile cold start compilation time with
regional compilation"): ``torch.compile`` of the block class's ``forward``, not of the model.
Dynamo treats the block module as an input (its parameters are graph inputs, not constants), so
every layer's instance, and every model of the same block class, width and batch shape, passes
the same guards and runs the same compiled code: one layer is traced, lowered and compiled
instead of ``n_layer``. Inductor's on-disk FX-graph, AOT-autograd and autotuning caches key on
that one block graph, which does not depend on the depth, so a trial of another depth at a
width seen before loads its kernels instead of compiling them (``study.orchestra.job.
compile_cache_env`` says where those caches live). What is left outside the compiled blocks
(the embedding, the final norm, the cast to the compute dtype) runs eagerly: a few elementwise
passes that whole-model compilation would fuse into its neighbours.

The compiled ``forward`` is installed on the blocks only while the trunk runs (a scoped instance
attribute), so the model stays an ordinary eager module everywhere else: evaluation and sampling,
at shapes the step never sees, do not recompile.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from study.models import LanguageModel


def repeated_blocks(model: LanguageModel) -> list[nn.Module]:
    """The blocks ``model`` repeats: the members of each ``nn.ModuleList`` in it whose members
    are all of one class (the GPT's transformer blocks); [] when it has none (the LSTM)."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module):
            if len({type(m) for m in module}) == 1:
                blocks.extend(module)
    return blocks


class CompiledBlocks:
    """One ``torch.compile`` of each block class's ``forward`` (``dynamic=False``: one graph per
    batch shape, as the step's CUDA graph needs), installed on ``blocks`` while ``active``."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        self.blocks = blocks
        self._compiled: dict[type, Callable[..., Any]] = {}
        for block in blocks:
            cls = type(block)
            if cls not in self._compiled:
                self._compiled[cls] = torch.compile(cls.forward, dynamic=False)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within: each block's ``forward`` is the compiled one (an instance attribute shadowing
        the class's); after: removed again, whatever happened inside."""
        for block in self.blocks:
            # Module.__call__ calls self.forward: this instance attribute shadows the class's.
            block.__dict__["forward"] = functools.partial(self._compiled[type(block)], block)
        try:
            yield
        finally:
            for block in self.blocks:
                block.__dict__.pop("forward", None)


class Trunk(nn.Module):
    """The model up to its final norm, output cast to the compute dtype (``model.hidden``), with
    ``regions``' compiled blocks active while it runs (eager throughout without them)."""

    def __init__(
        self, model: LanguageModel, dtype: torch.dtype, *, regions: CompiledBlocks | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.dtype = dtype
        self.regions = regions

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        with self.regions.active() if self.regions else contextlib.nullcontext():
            return self.model.hidden(idx).to(self.dtype)  # (B, T, d_model)


def make_trunk(
    model: LanguageModel, dtype: torch.dtype, *, compile: bool, regional: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``trunk(idx) -> hidden states`` in ``dtype``: compiled by regions when ``compile`` and
    ``regional`` and the model repeats a block, compiled whole (one graph, ``dynamic=False``)
    when ``compile`` otherwise, else eager."""
    blocks = repeated_blocks(model) if compile and regional else []
    if blocks:
        return Trunk(model, dtype, regions=CompiledBlocks(blocks))
    trunk = Trunk(model, dtype)
    return torch.compile(trunk, dynamic=False) if compile else trunk
