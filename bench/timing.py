"""How one column is timed: warm up, synchronise, time steady-state steps, synchronise again.

Every column of the table goes through ``measure``, so all of them are timed alike: ``warmup``
untimed steps (compilation, autotuning, graph capture), then at least ``min_steps`` steps and
``min_seconds`` of wall time between two synchronisations. A failure (out of memory, a compile
error) comes back as one line of text in place of the timing, so one column cannot lose the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from bench.device import free, peak_flops, synchronize
from study.errors import first_line

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timing:
    """One measurement: steady-state rate and what it took to get there."""

    tokens_per_s: float
    step_ms: float
    steps: int
    warmup_s: float  # first steps: compilation, autotuning, graph capture
    peak_mem_gb: float | None = None
    mfu: float | None = None


def time_steps(
    step: Callable[[], int],
    *,
    device: torch.device,
    warmup: int,
    min_steps: int,
    min_seconds: float,
) -> Timing:
    """Run ``warmup`` steps, then time at least ``min_steps`` steps and ``min_seconds``;
    ``step`` returns the tokens it trained on."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    t1 = time.perf_counter()
    tokens = steps = 0
    while True:
        tokens += step()
        steps += 1
        if steps >= min_steps and steps % 4 == 0:  # sync rarely, so the host keeps ahead
            synchronize(device)
            if time.perf_counter() - t1 >= min_seconds:
                break
    elapsed = time.perf_counter() - t1
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Timing(
        tokens_per_s=tokens / elapsed,
        step_ms=1e3 * elapsed / steps,
        steps=steps,
        warmup_s=t1 - t0,
        peak_mem_gb=mem,
    )


@contextmanager
def sdpa_backend(name: str | None) -> Iterator[None]:
    """Restrict ``scaled_dot_product_attention`` to backend ``name``; None leaves the choice to
    PyTorch."""
    if name is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    with sdpa_kernel(backends[name]):
        yield


def measure(
    build: Callable[[], Callable[[], int]],
    *,
    device: torch.device,
    flops_per_token: int,
    warmup: int,
    min_steps: int,
    min_seconds: float,
    sdpa: str | None = None,
) -> Timing | str:
    """Build and time one step, MFU included where the device's peak is known; a failure comes
    back as ``"ExceptionType: first line"``."""
    free(device)
    step: Callable[[], int] | None = None
    try:
        with sdpa_backend(sdpa):
            step = build()
            timing = time_steps(
                step, device=device, warmup=warmup, min_steps=min_steps, min_seconds=min_seconds
            )
    except Exception as exc:  # noqa: BLE001 - one failed column must not lose the others
        log.warning("measurement failed: %s", exc, exc_info=True)
        return f"{type(exc).__name__}: {first_line(exc)[:200]}"
    finally:
        step = None  # the step holds the model and its graphs: let free() release them
        free(device)
    peak = peak_flops(device)
    mfu = flops_per_token * timing.tokens_per_s / peak if peak else None
    return dataclasses.replace(timing, mfu=mfu)


def median_timing(values: list[Timing | str]) -> Timing | str:
    """The measurement with the median rate (the lower one of an even count); a failure if all
    failed."""
    ok = sorted((v for v in values if isinstance(v, Timing)), key=lambda t: t.tokens_per_s)
    return ok[(len(ok) - 1) // 2] if ok else values[0]


def as_json(t: Timing | str | None) -> dict[str, Any] | str | None:
    """A timing as a JSON object; a failure's text and a missing column as they are."""
    return dataclasses.asdict(t) if isinstance(t, Timing) else t
