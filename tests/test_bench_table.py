"""bench.table: the results table as text."""

from __future__ import annotations

from typing import Any

from bench.table import format_row, format_table, format_variant


def cell(rate: float, mfu: float | None = None) -> dict[str, Any]:
    return {"tokens_per_s": rate, "mfu": mfu}


ROW: dict[str, Any] = {
    "size": "1M",
    "params": 1.15e6,
    "trainer": cell(17.06e6, 0.136),
    "textbook": cell(2e6),
    "tuned": cell(9.6e6),
    "graphed": "OutOfMemoryError: x",
    "a_over_b": 8.53,
    "a_over_c": 1.777,
}


def test_row_shows_every_column_ratio_and_gap() -> None:
    line = format_row(ROW)
    assert line.startswith("   1M   1.15M | a    17.060M b     2.000M c     9.600M d     failed |")
    assert "a/b  8.53x a/c  1.78x a/d     - " in line  # no d timing, no a/d
    assert "own          - " in line and "MFU a  13.6% b     -  c     -  d     - " in line
    assert "k" in format_row({**ROW, "trainer": cell(12_345.0)}).split("|")[1]


def test_table_says_what_d_is_on_each_device() -> None:
    result: dict[str, Any] = {
        "device": "NVIDIA H200",
        "batch": 256,
        "seq_len": 256,
        "vocab": 4096,
        "own_batch": 256,
        "repeat": 3,
        "rows": [ROW],
        "tuned_options": {"bf16": True, "compile": True, "fused": True},
    }
    gpu = format_table({**result, "graphed_equals_tuned": False}).splitlines()
    assert gpu[0].startswith("device: NVIDIA H200 | batch 256 x seq 256")
    assert "median of 3" in gpu[0]
    assert "(c) textbook with bf16, compile, fused" in gpu[1]
    assert "(d) (c) + fused capturable AdamW, whole step in one CUDA graph" in gpu[1]
    assert gpu[2] == format_row(ROW) and len(gpu) == 3
    cpu = format_table(
        {**result, "graphed_equals_tuned": True, "tuned_options": {"bf16": False}}
    ).splitlines()
    assert "(d) = (c): CUDA graphs need CUDA" in cpu[1]
    assert "textbook with nothing that pays" in cpu[1]


def test_variant_line_shows_rate_or_failure_and_plan() -> None:
    entry: dict[str, Any] = {
        "variant": "nograph",
        "batch": 512,
        "plan": "bf16 compile",
        "timing": cell(1_234_567.0),
    }
    assert format_variant(entry) == (
        "  variant nograph            batch  512: 1,234,567 tok/s  [bf16 compile]"
    )
    warm = {**entry, "timing": {**cell(1_234_567.0), "warmup_s": 12.4}}
    assert format_variant(warm) == (
        "  variant nograph            batch  512: 1,234,567 tok/s, warm-up 12 s  [bf16 compile]"
    )
    assert "batch  512: OutOfMemoryError: x  [" in format_variant(
        {**entry, "timing": "OutOfMemoryError: x"}
    )
