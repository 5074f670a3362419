"""bench.run: the bench's size ladder and what one row of the table holds."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bench.run import LADDER, column_builds, measure_row, model_config
from study.config import ModelConfig
from study.errors import UsageError
from study.models import count_params

CPU = torch.device("cpu")
TINY = ModelConfig(
    n_layer=1, d_model=32, n_head=1, pos="learned", mlp="gelu", vocab_size=300, seq_len=16
)
FAST: dict[str, Any] = {"warmup": 0, "min_steps": 1, "min_seconds": 0.0}


def test_ladder_sizes_are_as_named() -> None:
    targets = {"0.4M": 0.4e6, "1M": 1e6, "2M": 2e6, "4M": 4e6, "12M": 12e6}
    assert LADDER.names == list(targets)
    for name, target in targets.items():
        mc = model_config(name)
        params = count_params(mc).total
        assert 0.9 * target <= params <= 1.2 * target, (name, params)
        assert mc.d_model // mc.n_head == 32 and mc.vocab_size == 4096 and mc.seq_len == 256
        assert (mc.pos, mc.mlp) == ("learned", "gelu")  # the textbook GPT-2's shape
    with pytest.raises(UsageError, match="unknown size '3M'"):
        model_config("3M")


def test_column_d_is_measured_only_on_cuda() -> None:
    def keys(columns: list[str], device: torch.device) -> list[str]:
        return list(
            column_builds(
                TINY,
                columns=columns,
                tokens=torch.zeros(1),
                batch=2,
                own=2,
                device=device,
                plans=[],
            )
        )

    assert keys(["a", "b", "c", "d", "own"], CPU) == ["trainer", "textbook", "tuned"]
    assert keys(["d"], CPU) == ["tuned"]  # d is c's figure there
    assert keys(["c", "d"], torch.device("cuda")) == ["tuned", "graphed"]


@pytest.mark.slow
def test_row_with_d_alone_off_cuda_reports_c_as_d() -> None:
    tokens = torch.randint(0, TINY.vocab_size, (4096,), dtype=torch.int32)
    row = measure_row(
        "tiny", TINY, columns=["a", "d"], tokens=tokens, batch=2, own=2, device=CPU, **FAST
    )
    assert "tuned" not in row and "textbook" not in row
    assert row["graphed"]["tokens_per_s"] > 0 and row["graphed"]["steps"] >= 1
    assert row["a_over_d"] == pytest.approx(
        row["trainer"]["tokens_per_s"] / row["graphed"]["tokens_per_s"]
    )
    assert "a_over_b" not in row and "a_over_c" not in row
    assert row["params"] == count_params(TINY).total and row["trainer_plan"]
