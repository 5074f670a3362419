"""The compiler's and the GPU libraries' start-up, paid once per process before any trial's clock.

What a trial's first steps pay that does not depend on its model: the compiler stack's imports,
Inductor's pool of compile workers, the first compilation of the process (Dynamo, AOT autograd,
Inductor's lowering of each kind of operation, its pattern passes and Triton's code generation
and driver, each initialised lazily on first use), the compile caches' key of this PyTorch,
cuBLAS's handles and cuDNN's libraries, Triton itself. ``warm_compiler`` pays all of it on a
probe of fixed, tiny shapes (a small transformer layer's kinds of work). A study's waiting trainer process (``study.train
--config-from-stdin``) calls it before its trial's config exists, while the previous trial trains:
nothing about the next trial's shape is known then, so nothing of its model is compiled ahead.
A process that starts with its config calls it in its setup, before the clock. Either way a
trial's budget pays for compiling its own model only (the block at its width and batch shape,
the head's kernels, the CUDA graph's warm-up and capture), the same for the first trial of a
process and for a later one.

The probe's kernels run for microseconds on the GPU; its compilation (a few seconds of one CPU
core and the compile workers) shares the host with the trial that trains meanwhile, whose host
thread mostly waits on its CUDA graph.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F

from study.training.regional import compile_options

log = logging.getLogger(__name__)

_warmed: set[str] = set()  # devices warmed in this process


def _probe(
    idx: torch.Tensor, table: torch.Tensor, w: torch.Tensor, proj: torch.Tensor
) -> torch.Tensor:
    """A transformer layer's kinds of work at tiny fixed shapes, for Inductor to compile forward
    and backward: an embedding lookup (its backward a scatter-add), a norm, a product, causal
    attention, an activation and a reduction. Each kind's lowering, its pattern passes (built on
    first use) and its kernels' code generation are first paid here, not by a trial."""
    x = F.embedding(idx, table)  # (B, T, d)
    h = F.layer_norm(x, (x.size(-1),), w)
    b, t, d = h.shape
    q = (h @ proj).view(b, t, 2, d // 2).transpose(1, 2)  # (B, 2, T, d / 2)
    a = F.scaled_dot_product_attention(q, q, q, is_causal=True).transpose(1, 2).reshape(b, t, d)
    return (F.gelu(a, approximate="tanh") * h).float().square().mean()


def warm_compiler(device: torch.device) -> float:
    """Warm the compiler and the GPU libraries on ``device`` (CUDA; elsewhere nothing: there the
    step is eager), once per process. Returns the seconds it took (0 when there was nothing to
    do)."""
    key = str(device)
    if device.type != "cuda" or key in _warmed:
        return 0.0
    _warmed.add(key)
    started = time.perf_counter()
    import torch._dynamo  # noqa: F401  (seconds of imports)
    import torch._inductor.async_compile as async_compile

    warm_pool = getattr(async_compile.AsyncCompile, "warm_pool", None)
    if warm_pool is not None:  # not in every PyTorch release: starts the compile workers
        warm_pool()
    _warm_libraries(device)
    _warm_compile(device)
    torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    log.info("overhead: compiler and GPU libraries warmed in %.2fs", seconds)
    return seconds


def _warm_libraries(device: torch.device) -> None:
    """cuBLAS (a bf16 product and its gradient), cuDNN's and flash attention (a causal
    attention and its gradient, each backend that runs here) and Triton's compiler (one trivial
    kernel compiled in this process, as the head's kernel is)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    a = torch.randn(64, 64, device=device, dtype=torch.bfloat16, requires_grad=True)
    (a @ a).float().sum().backward()
    q = torch.randn(1, 2, 64, 32, device=device, dtype=torch.bfloat16, requires_grad=True)
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION):
        try:
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
        except RuntimeError:  # not on this GPU or build: the trial's choice does not use it
            log.debug("attention backend %s not warmed", backend)
    from study.models.loss import triton_ready

    if triton_ready(device):
        from study.models import triton_ce  # imports Triton

        triton_ce.warm_jit(device)


def _warm_compile(device: torch.device) -> None:
    """Compile and run ``_probe`` forward and backward, with the trunk's Inductor settings
    (``study.training.regional.compile_options``) and the on-disk caches bypassed, so the
    whole pipeline runs (a cache hit would skip the lowering and code generation it warms), and
    compute the caches' key of this PyTorch (a hash of its sources, made once per process,
    which a trial's first lookup would otherwise pay)."""
    import torch._functorch.config as functorch_config
    import torch._inductor.codecache as codecache
    import torch._inductor.config as inductor_config

    torch_key = getattr(codecache, "torch_key", None)
    if torch_key is not None:
        torch_key()
    idx = torch.randint(0, 64, (2, 16), device=device)
    table = torch.randn(64, 32, device=device, requires_grad=True)
    w = torch.ones(32, device=device, requires_grad=True)
    proj = torch.randn(32, 32, device=device, requires_grad=True)
    with (
        inductor_config.patch(fx_graph_cache=False),
        functorch_config.patch(enable_autograd_cache=False),
    ):
        with torch.autocast(device.type, dtype=torch.bfloat16):  # as the trials run
            probe = torch.compile(_probe, dynamic=False, options=compile_options(autotune=False))
            loss = probe(idx, table, w, proj)
        loss.backward()  # the backward graph compiles here, on its first call
