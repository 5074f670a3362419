"""The compiler's warm-up before a trial's clock (study.training.warm): once per process, CUDA
only, and the probe compiles through the whole pipeline, past the on-disk caches."""

from __future__ import annotations

import pytest
import torch
from compiling import needs_inductor, unique_graphs

from study.training import warm


def test_nothing_to_warm_off_cuda() -> None:
    assert warm.warm_compiler(torch.device("cpu")) == 0.0
    assert "cpu" not in warm._warmed


@pytest.mark.slow
def test_the_probe_compiles_past_the_caches() -> None:
    """Twice, with the Dynamo state reset between: each time a fresh compilation, never an
    FX-graph cache hit (the caches are bypassed, so the warm-up always runs the lowering)."""
    needs_inductor()
    from torch._dynamo.utils import counters

    for _ in range(2):
        torch._dynamo.reset()
        graphs, hits = unique_graphs(), counters["inductor"]["fxgraph_cache_hit"]
        warm._warm_compile(torch.device("cpu"))
        assert unique_graphs() == graphs + 1
        assert counters["inductor"]["fxgraph_cache_hit"] == hits


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_warm_compiler_runs_once_per_process_on_cuda() -> None:
    device = torch.device("cuda")
    warm._warmed.discard(str(device))
    assert warm.warm_compiler(device) > 0
    assert warm.warm_compiler(device) == 0.0
