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
compile_cache_env`` says where those caches live). The final norm and the cast to the compute
dtype are one more region (one kernel each way instead of two), and the embedding (the model's
``transformer.embed``: the token and position gathers, their add, the embedding shortcut's norm)
one more, so its backward is Inductor's one scatter-add kernel, not eager PyTorch's sort-based
embedding backward and a separate reduction for the position table. Neither depends on the depth.

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

# Inductor's settings for the compiled trunk: one launch configuration per pointwise and
# reduction kernel, Inductor's own heuristic pick, where by default it compiles several and times
# each on the kernel's first call. On one H200 this took a first trial's compile seconds from
# 10.3-11.1 s to 6.2 s at the same tokens/s (19.26 M against 19.21 M at 1 M parameters, 12.14 M
# against 12.12 M at 2 M; docs/bench.md).
ONE_CONFIG = {
    "triton.autotune_pointwise": False,
    "test_configs.force_filter_reduction_configs": True,
}


def compile_options(*, autotune: bool) -> dict[str, Any]:
    """``torch.compile``'s ``options`` for the trunk's regions: ``ONE_CONFIG``, or with
    ``autotune`` Inductor's max-autotune without its CUDA graphs (the step captures its own).
    Settings this PyTorch does not have are left out."""
    import torch._inductor as inductor

    if autotune:
        return dict(inductor.list_mode_options("max-autotune-no-cudagraphs"))
    known = {}
    for key, value in ONE_CONFIG.items():
        try:
            inductor_setting(key)
        except AttributeError:
            continue
        known[key] = value
    return known


def inductor_setting(key: str) -> Any:
    """The value of Inductor's setting ``key`` now (dotted, e.g. ``triton.autotune_pointwise``).

    Raises:
        AttributeError: this PyTorch has no such setting.
    """
    import torch._inductor.config as inductor_config

    owner: Any = inductor_config
    for part in key.split("."):
        owner = getattr(owner, part)
    return owner


def repeated_blocks(model: LanguageModel) -> list[nn.Module]:
    """The blocks ``model`` repeats: the members of each ``nn.ModuleList`` in it whose members
    are all of one class and built of modules (the GPT's transformer blocks; not a list of
    single layers such as embeddings); [] when it has none (the LSTM)."""
    blocks: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module):
            composite = all(next(m.children(), None) is not None for m in module)
            if composite and len({type(m) for m in module}) == 1:
                blocks.extend(module)
    return blocks


def final_norm(model: LanguageModel) -> nn.Module | None:
    """The norm after the last block (the GPT's ``transformer.ln_f``), if the model has one."""
    norm = getattr(getattr(model, "transformer", None), "ln_f", None)
    return norm if isinstance(norm, nn.Module) else None


def embedding(model: LanguageModel) -> nn.Module | None:
    """The module whose ``embed`` method makes the blocks' inputs (the GPT's ``transformer``),
    if the model has one."""
    body = getattr(model, "transformer", None)
    return body if isinstance(body, nn.Module) and callable(getattr(body, "embed", None)) else None


def _norm_cast(norm: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``norm(x)`` cast to ``dtype``: one region, so the cast fuses into the norm's kernel
    (forward and backward) instead of a pass of its own over the hidden states."""
    return type(norm).forward(norm, x).to(dtype)


class CompiledBlocks:
    """One ``torch.compile`` of each block class's ``forward`` (``dynamic=False``: one graph per
    batch shape, as the step's CUDA graph needs), installed on ``blocks`` while ``active``; with
    ``norm``, the final norm and the cast to ``dtype`` compiled as one more region; with
    ``embed``, that module's ``embed`` method as one more. ``options`` are ``torch.compile``'s
    (Inductor's settings; None: its defaults)."""

    def __init__(
        self,
        blocks: list[nn.Module],
        *,
        norm: nn.Module | None = None,
        embed: nn.Module | None = None,
        dtype: torch.dtype = torch.float32,
        options: dict[str, Any] | None = None,
    ) -> None:
        compiled: dict[type, Callable[..., Any]] = {}
        # (module, method name, its compiled replacement)
        self._installs: list[tuple[nn.Module, str, Callable[..., Any]]] = []
        for block in blocks:
            cls = type(block)
            if cls not in compiled:
                compiled[cls] = torch.compile(cls.forward, dynamic=False, options=options)
            self._installs.append((block, "forward", functools.partial(compiled[cls], block)))
        if norm is not None:
            tail = torch.compile(_norm_cast, dynamic=False, options=options)
            self._installs.append((norm, "forward", functools.partial(tail, norm, dtype=dtype)))
        if embed is not None:
            head = torch.compile(type(embed).embed, dynamic=False, options=options)  # type: ignore[attr-defined]
            self._installs.append((embed, "embed", functools.partial(head, embed)))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Within: each region's method is the compiled one; after: removed again, whatever
        happened inside."""
        for module, name, method in self._installs:
            # self.forward / self.embed: this instance attribute shadows the class's method.
            module.__dict__[name] = method
        try:
            yield
        finally:
            for module, name, _ in self._installs:
                module.__dict__.pop(name, None)


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
    model: LanguageModel,
    dtype: torch.dtype,
    *,
    compile: bool,
    regional: bool,
    autotune: bool = False,
    embed: bool = True,
    norm: bool = True,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``trunk(idx) -> hidden states`` in ``dtype``: compiled by regions when ``compile`` and
    ``regional`` and the model repeats a block, compiled whole (one graph, ``dynamic=False``)
    when ``compile`` otherwise, else eager. ``autotune``: Inductor's max-autotune without its
    CUDA graphs (the step captures its own): matmuls as Triton templates where they time faster
    than cuBLAS, so pointwise work (the MLP's activation, residual adds, casts) can fuse into their
    epilogues and prologues, and tuned pointwise and reduction kernels; the tuning is compiling
    time, kept in the on-disk caches like the rest. ``embed`` and ``norm``: by regions, the
    embedding and the final norm (with the cast) are regions too (else they run eagerly)."""
    blocks = repeated_blocks(model) if compile and regional else []
    if blocks:
        regions = CompiledBlocks(
            blocks,
            norm=final_norm(model) if norm else None,
            embed=embedding(model) if embed else None,
            dtype=dtype,
            options=compile_options(autotune=autotune),
        )
        return Trunk(model, dtype, regions=regions)
    trunk = Trunk(model, dtype)
    if not compile:
        return trunk
    return torch.compile(trunk, dynamic=False, options=compile_options(autotune=autotune))
