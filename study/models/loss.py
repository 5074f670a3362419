"""The output projection and cross-entropy, fused and chunked so the logits never exist whole.

The (tokens x vocab) logits are the biggest tensor of a tiny model. ``linear_cross_entropy``
makes them, turns them into their gradient and consumes them chunk by chunk in the forward pass
(training); ``linear_nll_sum`` sums the held-out NLL the same way without gradients
(evaluation). ``ce_chunk_rows`` sizes the chunks for the device; ``head_kernels`` picks how a
chunk's gradient is made (PyTorch, or the Triton kernels of ``study.models.triton_ce`` on CUDA).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

# Logits bytes per chunk of the fused head. On an H100 at d_model 128, 16 MiB chunks (L2-sized)
# lost to 64 MiB ones by 7%, and on an H200 64 MiB lost to 512 MiB (the whole 256 x 256 batch at
# vocab 4096) by 4-5% at 1-2 M parameters: per-kernel overhead, not memory traffic, sets the cost.
CUDA_CE_CHUNK_BYTES = 512 * 2**20
CPU_CE_CHUNK_BYTES = 2 * 2**20  # about a core's share of last-level cache

SoftmaxGrad = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
# (h chunk, 16-bit weight, targets) -> (softmax - onehot, per-row NLL): the logits never made.
LogitsGrad = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, ...]]
CeKernel = Literal["torch", "rows", "fused"]
CE_KERNELS: tuple[CeKernel, ...] = ("torch", "rows", "fused")
# Widest d_model the fused kernel pays at: its cost grows with d padded to a power of two (H200,
# 65536 rows, vocab 4096: 0.47 ms at d 128, 0.82 at d 160 and 224), where cuBLAS logits and the
# row kernel cost 0.60 ms at d 128 and 0.64-0.68 ms at d 160-224 (python -m bench.kernels).
FUSED_MAX_D = 128


def cuda_ce_kernel(*, d_model: int) -> CeKernel:
    """The fastest measured kernel for the head's gradient on CUDA at ``d_model``."""
    return "fused" if d_model <= FUSED_MAX_D else "rows"


def ce_chunk_rows(device: torch.device, *, vocab_size: int, half: bool) -> int:
    """Rows per chunk of the fused head: about CUDA_CE_CHUNK_BYTES or CPU_CE_CHUNK_BYTES of
    logits (16-bit logits when ``half``)."""
    logit_bytes = vocab_size * (2 if half else 4)
    if device.type == "cuda":
        return max(64, CUDA_CE_CHUNK_BYTES // logit_bytes)
    return max(16, CPU_CE_CHUNK_BYTES // logit_bytes)


def softmax_grad_eager(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(softmax - onehot) in the logits' dtype and per-row NLL, in float32, in place."""
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1, keepdim=True)  # (n, 1)
    nll = (lse - x.gather(1, targets[:, None])).squeeze(1)  # (n,)
    p = x.sub_(lse).exp_()  # logits is this step's scratch: overwrite it
    p.scatter_add_(1, targets[:, None], torch.full_like(lse, -1.0))
    return p.to(logits.dtype), nll


def softmax_grad_fusable(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The same, written as one reduction and one pointwise pass for the compiler to fuse."""
    x = logits.float()
    lse = torch.logsumexp(x, dim=-1, keepdim=True)  # (n, 1)
    nll = (lse - x.gather(1, targets[:, None])).squeeze(1)  # (n,)
    onehot = torch.arange(x.size(1), device=x.device) == targets[:, None]  # (n, V)
    g = torch.exp(x - lse) - onehot.to(x.dtype)
    return g.to(logits.dtype), nll


def softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """``cap * tanh(logits / cap)``: logits squashed into (-cap, cap); ``cap`` 0 is off."""
    return cap * torch.tanh(logits / cap) if cap else logits


def softcapped(grad: SoftmaxGrad, cap: float) -> SoftmaxGrad:
    """A chunk's gradient and NLL for raw logits ``z`` when the loss sees ``softcap(z, cap)``:
    ``grad`` of the capped logits times the cap's derivative ``1 - tanh(z / cap) ** 2``."""

    def capped(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t = torch.tanh(logits.float() / cap)
        g, nll = grad((cap * t).to(logits.dtype), targets)
        return (g.float() * (1 - t * t)).to(logits.dtype), nll

    return capped


def triton_ready(device: torch.device) -> bool:
    """Whether the Triton kernels can run on ``device`` (CUDA, Triton installed)."""
    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


def head_kernels(
    kind: CeKernel, *, device: torch.device, vocab_size: int, compile: bool, cap: float = 0.0
) -> tuple[SoftmaxGrad, LogitsGrad | None]:
    """How the fused head turns a chunk into its logits' gradient: ``torch`` (cuBLAS logits, the
    softmax gradient compiled when ``compile``, else eager), ``rows`` (cuBLAS logits, the
    gradient in one Triton pass over them) or ``fused`` (one Triton kernel from ``h`` and the
    weight; no logits in memory). Off CUDA or without Triton every kind is ``torch``, and
    ``rows`` is ``torch`` where a row is too wide for the kernel. With a logit soft-cap ``cap``
    > 0 the gradient is ``softcapped`` (``fused``, which never sees the logits, becomes
    ``rows``)."""
    softmax_grad: SoftmaxGrad = softmax_grad_eager
    if compile:
        fusable = softcapped(softmax_grad_fusable, cap) if cap else softmax_grad_fusable
        softmax_grad = torch.compile(fusable, dynamic=False)
    elif cap:
        softmax_grad = softcapped(softmax_grad, cap)
    if kind == "torch" or not triton_ready(device):
        return softmax_grad, None
    from study.models import triton_ce  # imports triton: only here, on CUDA

    if kind == "fused" and not cap:
        return softmax_grad, triton_ce.linear_softmax_grad
    if vocab_size <= triton_ce.MAX_ROW:
        rows: SoftmaxGrad = triton_ce.softmax_grad_rows
        return (softcapped(rows, cap) if cap else rows), None
    return softmax_grad, None


def compile_head_behind(
    softmax_grad: SoftmaxGrad,
    logits_grad: LogitsGrad | None,
    *,
    rows: int,
    d_model: int,
    vocab_size: int,
    dtype: torch.dtype,
    device: torch.device,
) -> threading.Thread | None:
    """Start compiling the head's Triton kernel (``study.models.triton_ce``) in a thread of its
    own, where ``head_kernels`` picked one, for chunks of ``rows`` rows; None where it picked
    none (PyTorch's kernels, a compiled softmax gradient: Dynamo is not thread-safe).

    Triton compiles a kernel on its first call, on the calling thread: called from the first
    training step, this lets that compilation (its code generation, LLVM and ``ptxas``, which do
    not hold the interpreter) overlap the compiler's work on the trunk, which the same step pays
    for before the head's first call. The thread calls the kernel once on a few rows of zeros, on
    a stream of its own: rows keep their remainder modulo 16 (the one property of a row count
    Triton specialises its code on), the width and vocabulary are the kernel's compile-time
    constants, so the call compiles, or loads from Triton's cache, exactly the code the step
    then runs. ``join`` the thread before the step's first call of the kernel."""
    if not triton_ready(device):
        return None
    from study.models import triton_ce

    if logits_grad is not triton_ce.linear_softmax_grad and (
        logits_grad is not None or softmax_grad is not triton_ce.softmax_grad_rows
    ):
        return None
    n = rows if rows < 256 else 256 + rows % 16

    def compile_kernel() -> None:
        try:
            with torch.cuda.device(device), torch.cuda.stream(torch.cuda.Stream(device)):
                targets = torch.zeros(n, dtype=torch.long, device=device)
                if logits_grad is not None:
                    h = torch.zeros(n, d_model, dtype=dtype, device=device)
                    w = torch.zeros(vocab_size, d_model, dtype=dtype, device=device)
                    logits_grad(h, w, targets)
                else:
                    softmax_grad(torch.zeros(n, vocab_size, dtype=dtype, device=device), targets)
                torch.cuda.current_stream(device).synchronize()
        except Exception:  # the step's own first call compiles it then, and says what failed
            log.debug("the head kernel did not compile ahead", exc_info=True)

    thread = threading.Thread(target=compile_kernel, name="head-kernel-compile", daemon=True)
    thread.start()
    return thread


class _LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``h @ weight.T`` against ``targets``, gradients made in the forward
    pass chunk by chunk, so the (N, V) logits exist one chunk at a time."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        h: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        softmax_grad: SoftmaxGrad,
        logits_grad: LogitsGrad | None,
    ) -> torch.Tensor:
        # h (N, d) in the compute dtype; weight (V, d) float32 master; targets (N,) int64.
        with torch.autocast(h.device.type, enabled=False):
            n = h.size(0)
            w = weight.to(h.dtype)
            grad_h = torch.empty_like(h)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=h.device)
            nll = []
            for s in range(0, n, chunk):
                hs, ts = h[s : s + chunk], targets[s : s + chunk]
                if logits_grad is not None:
                    g, nll_rows = logits_grad(hs, w, ts)
                else:
                    g, nll_rows = softmax_grad(hs @ w.t(), ts)  # logits (chunk, V)
                nll.append(nll_rows)
                torch.mm(g, w, out=grad_h[s : s + chunk])
                if g.dtype == torch.float32:
                    grad_w.addmm_(g.t(), hs)
                else:
                    grad_w += g.t() @ hs
            ctx.save_for_backward(grad_h, grad_w)
            ctx.n = n
            return torch.cat(nll).sum() / n

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors  # of the summed loss
        scale = grad_out / ctx.n
        return grad_h * scale.to(grad_h.dtype), grad_w * scale, None, None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk: int,
    softmax_grad: SoftmaxGrad = softmax_grad_eager,
    logits_grad: LogitsGrad | None = None,
) -> torch.Tensor:
    """``F.cross_entropy(h @ weight.T, targets)`` (mean, float32) without materialising the
    logits: ``chunk`` rows at a time, each chunk's gradient by ``logits_grad`` from ``h`` and
    the weight when given, else by ``softmax_grad`` from its logits. Differentiable in ``h``
    and ``weight``."""
    out: torch.Tensor = _LinearCrossEntropy.apply(
        h, weight, targets, chunk, softmax_grad, logits_grad
    )
    return out


def linear_nll_sum(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk: int, cap: float = 0.0
) -> torch.Tensor:
    """Summed ``F.cross_entropy(softcap(h @ weight.T, cap), targets)`` in float32, ``chunk``
    rows at a time, without gradients: evaluation's version of ``linear_cross_entropy``.
    Matmuls follow the ambient autocast, as the model's own head would."""
    total = torch.zeros((), dtype=torch.float32, device=h.device)
    with torch.no_grad():
        for s in range(0, h.size(0), chunk):
            logits = softcap((h[s : s + chunk] @ weight.t()).float(), cap)  # (chunk, V)
            t = targets[s : s + chunk]
            total += torch.logsumexp(logits, dim=-1).sum() - logits.gather(1, t[:, None]).sum()
    return total
