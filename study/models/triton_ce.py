"""Triton kernels for the fused head's cross-entropy gradient (CUDA only; imported lazily).

``study.models.loss`` is the public side (``head_kernels``): it picks these kernels where Triton
and CUDA are present and falls back to PyTorch elsewhere. Both kernels return, for rows of logits ``h @ w.T`` and
their targets, the gradient of the summed cross-entropy with respect to the logits,
``softmax - onehot`` in 16 bits, and each row's NLL in float32, all arithmetic in float32:

* ``softmax_grad_rows``: from logits already made (one row per program, one read and one write
  of the row, the gradient written over the logits).
* ``linear_softmax_grad``: from ``h`` and ``w`` directly, the logits made tile by tile in
  registers twice (once for the row's log-sum-exp, once for the gradient), so they never reach
  memory; at d_model 128-384 the second product costs less than the logits' write and read.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_ROW = 16384  # widest vocabulary softmax_grad_rows holds in registers


@triton.jit
def _scale_kernel(x_ptr, n, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(x_ptr + offsets, tl.load(x_ptr + offsets, mask=mask) * 2.0, mask=mask)


def warm_jit(device: torch.device) -> None:
    """Compile and run a trivial kernel on ``device``: Triton's compiler (its front end, MLIR,
    LLVM and ``ptxas``) and driver start up here, once per process, not on the head kernel's
    first compilation."""
    x = torch.ones(64, device=device)
    _scale_kernel[(1,)](x, x.numel(), BLOCK=64)


@triton.jit
def _softmax_grad_rows_kernel(
    x_ptr, t_ptr, nll_ptr, N, stride, V, BLOCK: tl.constexpr, ROWS: tl.constexpr
):
    rows = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)
    cols = tl.arange(0, BLOCK)
    mask = (rows[:, None] < N) & (cols[None, :] < V)
    ptr = x_ptr + rows[:, None] * stride + cols[None, :]
    x = tl.load(ptr, mask=mask, other=-float("inf")).to(tl.float32)  # (ROWS, BLOCK)
    m = tl.max(x, 1)
    e = tl.exp(x - m[:, None])
    s = tl.sum(e, 1)
    target = tl.load(t_ptr + rows, mask=rows < N, other=0)
    hit = cols[None, :] == target[:, None]
    x_t = tl.sum(tl.where(hit, x, 0.0), 1)
    tl.store(nll_ptr + rows, m + tl.log(s) - x_t, mask=rows < N)
    g = e * (1.0 / s)[:, None] - tl.where(hit, 1.0, 0.0)
    tl.store(ptr, g.to(x_ptr.dtype.element_ty), mask=mask)


# (rows per program, num_warps) of the row kernel; bench.kernels times others. H200, 65536 x
# 4096 bf16: (1, 8) 0.423 ms, (1, 4) 0.447, (2, 8) 0.549, (4, 16) 0.630; compiled PyTorch 0.534.
ROWS_CONFIG = (1, 8)


def softmax_grad_rows(
    logits: torch.Tensor, targets: torch.Tensor, config: tuple[int, int] | None = None
) -> tuple[torch.Tensor, ...]:
    """(softmax - onehot) written over ``logits`` (n, V), contiguous rows, V <= MAX_ROW, and
    per-row NLL (n,) float32; ``config`` as ROWS_CONFIG."""
    n, v = logits.shape
    nll = torch.empty(n, dtype=torch.float32, device=logits.device)
    block = triton.next_power_of_2(v)
    rows, warps = config or ROWS_CONFIG
    if block > 4096:
        rows, warps = 1, 16
    _softmax_grad_rows_kernel[(triton.cdiv(n, rows),)](
        logits, targets, nll, n, logits.stride(0), v, BLOCK=block, ROWS=rows, num_warps=warps
    )
    return logits, nll


@triton.jit
def _logits_tile(
    a,
    h_ptr,
    w_ptr,
    rows,
    cols,
    N,
    V: tl.constexpr,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr,
    HOIST: tl.constexpr,
):
    """float32 (BLOCK_M, BLOCK_V) tile of h @ w.T; h (N, D) and w (V, D) contiguous. With
    HOIST (BLOCK_K >= D) ``a`` is the rows' whole h, loaded once by the caller."""
    acc = tl.zeros((BLOCK_M, BLOCK_V), dtype=tl.float32)
    ks = tl.arange(0, BLOCK_K)
    if HOIST:
        b = tl.load(
            w_ptr + cols[:, None] * D + ks[None, :],
            mask=(cols[:, None] < V) & (ks[None, :] < D),
            other=0.0,
        )
        acc = tl.dot(a, tl.trans(b), acc)
    else:
        for k0 in range(0, D, BLOCK_K):
            k = k0 + ks
            a = tl.load(
                h_ptr + rows[:, None] * D + k[None, :],
                mask=(rows[:, None] < N) & (k[None, :] < D),
                other=0.0,
            )
            b = tl.load(
                w_ptr + cols[:, None] * D + k[None, :],
                mask=(cols[:, None] < V) & (k[None, :] < D),
                other=0.0,
            )
            acc = tl.dot(a, tl.trans(b), acc)
    return acc


@triton.jit
def _linear_softmax_grad_kernel(
    h_ptr,
    w_ptr,
    t_ptr,
    g_ptr,
    nll_ptr,
    N,
    V: tl.constexpr,
    D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_K: tl.constexpr,
    HOIST: tl.constexpr,
):
    rows = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)
    target = tl.load(t_ptr + rows, mask=rows < N, other=0)
    a = tl.zeros((BLOCK_M, BLOCK_K), dtype=h_ptr.dtype.element_ty)
    if HOIST:
        ks = tl.arange(0, BLOCK_K)
        a = tl.load(
            h_ptr + rows[:, None] * D + ks[None, :],
            mask=(rows[:, None] < N) & (ks[None, :] < D),
            other=0.0,
        )
    m = tl.full((BLOCK_M,), -float("inf"), dtype=tl.float32)
    s = tl.zeros((BLOCK_M,), dtype=tl.float32)
    x_t = tl.zeros((BLOCK_M,), dtype=tl.float32)
    vs = tl.arange(0, BLOCK_V)
    for v0 in range(0, V, BLOCK_V):  # pass 1: online log-sum-exp and the target's logit
        cols = v0 + vs
        x = _logits_tile(a, h_ptr, w_ptr, rows, cols, N, V, D, BLOCK_M, BLOCK_V, BLOCK_K, HOIST)
        x = tl.where(cols[None, :] < V, x, -float("inf"))
        m_new = tl.maximum(m, tl.max(x, 1))
        s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), 1)
        m = m_new
        x_t += tl.sum(tl.where(cols[None, :] == target[:, None], x, 0.0), 1)
    lse = m + tl.log(s)
    tl.store(nll_ptr + rows, lse - x_t, mask=rows < N)
    for v0 in range(0, V, BLOCK_V):  # pass 2: the same logits again, now their gradient
        cols = v0 + vs
        x = _logits_tile(a, h_ptr, w_ptr, rows, cols, N, V, D, BLOCK_M, BLOCK_V, BLOCK_K, HOIST)
        g = tl.exp(x - lse[:, None]) - tl.where(cols[None, :] == target[:, None], 1.0, 0.0)
        tl.store(
            g_ptr + rows[:, None] * V + cols[None, :],
            g.to(g_ptr.dtype.element_ty),
            mask=(rows[:, None] < N) & (cols[None, :] < V),
        )


# (BLOCK_M, BLOCK_V, num_warps, num_stages) of the fused kernel; bench.kernels times others.
# H200, 65536 rows, vocab 4096, d 128: 0.465 ms, against 0.181 (cuBLAS logits) + 0.423 (rows).
FUSED_CONFIG = (128, 64, 8, 3)


def linear_softmax_grad(
    h: torch.Tensor,
    w: torch.Tensor,
    targets: torch.Tensor,
    config: tuple[int, int, int, int] | None = None,
) -> tuple[torch.Tensor, ...]:
    """(softmax(h @ w.T) - onehot) as (n, V) in ``h``'s dtype and per-row NLL (n,) float32,
    for ``h`` (n, D) and ``w`` (V, D) of one 16-bit dtype; ``config`` as FUSED_CONFIG."""
    h, w = h.contiguous(), w.contiguous()
    n, d = h.shape
    v = w.size(0)
    block_m, block_v, warps, stages = config or FUSED_CONFIG
    g = torch.empty((n, v), dtype=h.dtype, device=h.device)
    nll = torch.empty(n, dtype=torch.float32, device=h.device)
    hoist = d <= 256  # the rows' whole h stays in registers across both passes
    block_k = max(16, triton.next_power_of_2(d)) if hoist else 64
    _linear_softmax_grad_kernel[(triton.cdiv(n, block_m),)](
        h,
        w,
        targets,
        g,
        nll,
        n,
        v,
        d,
        BLOCK_M=block_m,
        BLOCK_V=block_v,
        BLOCK_K=block_k,
        HOIST=hoist,
        num_warps=warps,
        num_stages=stages,
    )
    return g, nll
