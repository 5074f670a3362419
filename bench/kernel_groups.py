"""Kernels of a profiled step sorted into what they do: matmul, attention, the output head and
cross-entropy, the optimizer, copies, and norms with the other elementwise kernels.

By name, as ``torch.profiler`` reports them on CUDA: cuBLAS and cuBLASLt products (``gemm``,
``xmma``, ``nvjet``, ``cutlass``) and Inductor's matmul templates (``triton_tem``), attention (flash, cuDNN's ``sdpa`` and its backward's ``dot_do_o`` and ``convert_dq`` helpers, ``fmha``), the project's
Triton head kernels and any softmax or log-softmax reduction (``study.models.triton_ce``, the
compiled softmax gradient, the textbook's cross-entropy), fused AdamW's multi-tensor kernels,
memory copies and fills; the rest (Inductor's ``triton_poi``/``triton_red``/``triton_per``
kernels, PyTorch's elementwise and reduction kernels) are norms, activations, residual adds, casts.
"""

from __future__ import annotations

from collections.abc import Iterable

GROUPS = ("matmul", "attention", "head+CE", "optimizer", "copy", "norm+elementwise")
_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # attention first: cuDNN's attention kernels also carry "flash" and "gemm"-like words
    # cuDNN's attention backward also runs helpers named for what they compute (dO . O, dQ's cast)
    ("attention", ("flash", "fmha", "sdpa", "attention", "attn", "dot_do_o", "convert_dq")),
    ("head+CE", ("softmax_grad", "logsumexp", "log_softmax", "nll_loss", "cross_entropy")),
    ("matmul", ("gemm", "xmma", "nvjet", "cutlass", "cublas", "gemv", "splitk", "triton_tem")),
    ("optimizer", ("adam", "multi_tensor_apply")),
    ("copy", ("memcpy", "memset")),
)


def kernel_group(name: str) -> str:
    """The group of the kernel called ``name`` (one of ``GROUPS``)."""
    low = name.lower()
    for group, words in _PATTERNS:
        if any(word in low for word in words):
            return group
    return "norm+elementwise"


def group_times(kernels: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Total time of each group over ``(kernel name, time)`` pairs, every group present."""
    totals = dict.fromkeys(GROUPS, 0.0)
    for name, seconds in kernels:
        totals[kernel_group(name)] += seconds
    return totals


def format_groups(totals: dict[str, float], *, steps: int) -> str:
    """One line per group: milliseconds per step and the share of the step's kernel time."""
    whole = sum(totals.values()) or 1.0
    lines = [f"{'group':<18} {'ms/step':>8} {'share':>6}"]
    for group, seconds in totals.items():
        lines.append(f"{group:<18} {1e3 * seconds / steps:8.3f} {seconds / whole:6.1%}")
    lines.append(f"{'all kernels':<18} {1e3 * whole / steps:8.3f}")
    return "\n".join(lines)
