"""Which device a job runs on, what it is called, and the per-device defaults.

Importing this module does not import torch (the study runner checks a device this way before
any worker starts); each function imports it when called.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from study.errors import UsageError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be present.

    Raises:
        UsageError: an unknown name, or a device this machine lacks.
    """
    import torch

    if name not in ("auto", "cuda", "mps", "cpu"):
        raise UsageError(f"unknown device {name!r}; use auto, cuda, mps or cpu")
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise UsageError("device 'cuda' was asked for but no CUDA device is present")
    if name == "mps" and not mps:
        raise UsageError("device 'mps' was asked for but Apple MPS is not available")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """A human label: the GPU's name, or the CPU's architecture, model and whether it has native
    bf16 (which sets its precision), e.g. ``cpu x86_64 (AMD EPYC, bf16)``: two CPUs that train at
    different speeds are told apart. Never the thread count, which the CPU thread tuner changes
    during a run."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    machine = platform.machine()
    if device.type == "mps":
        return f"Apple MPS ({machine})"
    model = cpu_model()
    details = [model] if model not in ("", machine) else []
    if cpu_has_bf16():
        details.append("bf16")
    return f"cpu {machine}" + (f" ({', '.join(details)})" if details else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what ``platform`` knows)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_batch_size(device: torch.device) -> int:
    """Rows per optimizer step when the config leaves it to the trainer."""
    return {"cuda": 256, "mps": 64}.get(device.type, 32)


def versions() -> dict[str, str]:
    """The library versions a result records, so a trial can be re-run."""
    import numpy as np
    import tokenizers
    import torch

    import study

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "tokenizers": tokenizers.__version__,
        "study": study.__version__,
    }


@functools.cache
def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(bool(getattr(cpu, name)()) for name in checks if hasattr(cpu, name))
    except RuntimeError:
        return False


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """``precision`` auto is bf16 autocast on CUDA and on CPUs with native bf16 instructions
    (measured on the 2-core AVX512-BF16 machine: 1.45-1.5x float32's tokens/s, the matmuls
    that bound a CPU step running at twice the rate), float32 (None: no autocast) elsewhere."""
    import torch

    if precision == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())
        precision = "bf16" if native else "fp32"
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> Callable[[], AbstractContextManager[Any]]:
    """A factory of autocast contexts for ``dtype`` on ``device`` (no autocast for None)."""
    if dtype is None:
        return nullcontext
    import torch

    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def eager_attention(device: torch.device) -> AbstractContextManager[Any]:
    """Attention on CUDA without cuDNN's backend, which builds and compiles a graph for each new
    shape: in evaluation and sampling (eager; sampling meets a new sequence length at every
    token) and in the training step (``study.training.step.make_loss``), where that build was
    0.7 s of a first trial's compile seconds on an H200 and flash attention ran as fast (19.20 M
    against 19.16 M tokens/s at 1 M parameters, 12.01 M against 12.07 M at 2 M)."""
    if device.type != "cuda":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    )
