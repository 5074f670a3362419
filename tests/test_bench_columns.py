"""bench.columns: each column's step builder trains the model it names and counts its tokens."""

from __future__ import annotations

import pytest
import torch

from bench.columns import Variant, graphed, textbook, trainer_step, tuned_options
from study.config import ModelConfig

CPU = torch.device("cpu")
TINY = ModelConfig(
    n_layer=1, d_model=32, n_head=1, pos="learned", mlp="gelu", vocab_size=300, seq_len=16
)


def tokens() -> torch.Tensor:
    return torch.randint(
        0, TINY.vocab_size, (4096,), dtype=torch.int32, generator=torch.Generator().manual_seed(0)
    )


def test_trainer_step_runs_the_plan_it_names_and_a_variant_changes_it() -> None:
    step, plan = trainer_step(TINY, device=CPU, tokens=tokens(), batch=3)
    assert step() == 3 * TINY.seq_len
    assert "eager" in plan and "fused-ce" in plan  # the CPU's plan for a fusable GPT
    _, varied = trainer_step(
        TINY,
        device=CPU,
        tokens=tokens(),
        batch=3,
        variant=Variant(name="plain", plan={"ce_chunk": 0}),
    )
    assert "plain-ce" in varied and varied.replace("plain-ce", "") != plan


def test_textbook_columns_count_their_tokens_and_tune_for_the_device() -> None:
    plain = textbook(TINY, device=CPU, tokens=tokens(), batch=2, tuned=False)
    assert plain() == 2 * TINY.seq_len
    assert tuned_options(CPU) == {"bf16": False, "compile": False, "fused": False}
    assert tuned_options(torch.device("cuda")) == {"bf16": True, "compile": True, "fused": True}


def test_graphed_column_needs_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device"):
        graphed(TINY, device=CPU, tokens=tokens(), batch=2)
