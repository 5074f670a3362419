"""Helpers for tests that run torch.compile on the CPU: whether Inductor can compile here, and
Dynamo's count of the graphs it compiled."""

from __future__ import annotations

import functools

import pytest
import torch


@functools.cache
def _inductor_compiles() -> bool:
    try:
        out = torch.compile(lambda x: x * 2)(torch.ones(3))
    except Exception:  # no C++ compiler, or a broken toolchain: nothing to test here
        return False
    return bool((out == 2).all())


def needs_inductor() -> None:
    """Skip the calling test where torch.compile (Inductor) cannot compile on this CPU."""
    if not _inductor_compiles():
        pytest.skip("torch.compile (Inductor) cannot compile on this CPU")


def unique_graphs() -> int:
    """Graphs Dynamo compiled in this process so far (``torch._dynamo.reset`` keeps the count)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
