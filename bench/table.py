"""The results table as text: one line per size, rates in k or M tokens/s, ratios, MFU."""

from __future__ import annotations

from typing import Any

# JSON key of each column, in the order the table prints them.
COLUMN_KEYS: dict[str, str] = {
    "a": "trainer",
    "b": "textbook",
    "c": "tuned",
    "d": "graphed",
    "own": "own",
}
# The trainer's rate over each baseline's, as stored in a row (``a_over_b`` ...).
RATIOS = ("b", "c", "d")


def _rate(t: Any) -> str:
    if t is None:
        return f"{'-':>10}"
    if not isinstance(t, dict):
        return f"{'failed':>10}"
    rate = t["tokens_per_s"]
    return f"{rate / 1e6:9.3f}M" if rate >= 1e5 else f"{rate / 1e3:9.2f}k"


def _mfu(t: Any) -> str:
    return f"{100 * t['mfu']:5.1f}%" if isinstance(t, dict) and t.get("mfu") else "    - "


def format_row(row: dict[str, Any]) -> str:
    """One size: every column's rate, a over b, c and d, the trainer at its own batch, MFU."""
    rates = " ".join(f"{col} {_rate(row.get(COLUMN_KEYS[col]))}" for col in "abcd")
    ratios = " ".join(
        f"a/{col} " + (f"{row[f'a_over_{col}']:5.2f}x" if f"a_over_{col}" in row else "    - ")
        for col in RATIOS
    )
    mfus = " ".join(f"{col} {_mfu(row.get(COLUMN_KEYS[col]))}" for col in "abcd")
    return (
        f"{row['size']:>5} {row['params'] / 1e6:6.2f}M | {rates} | {ratios} | "
        f"own {_rate(row.get('own'))} | MFU {mfus}"
    )


def format_variant(entry: dict[str, Any]) -> str:
    """One variant of the trainer's step at one size: its rate and warm-up seconds (or its
    failure) and plan."""
    t = entry["timing"]
    rate = f"{t['tokens_per_s']:,.0f} tok/s" if isinstance(t, dict) else t
    if isinstance(t, dict) and t.get("warmup_s") is not None:  # compiling, tuning, capture
        rate += f", warm-up {t['warmup_s']:.0f} s"
    return f"  variant {entry['variant']:<18} batch {entry['batch']:4d}: {rate}  [{entry['plan']}]"


def format_table(result: dict[str, Any]) -> str:
    """The header (device, shapes, what each column is) and one line per size."""
    tuned = ", ".join(k for k, v in result["tuned_options"].items() if v) or "nothing that pays"
    graphed = (
        "(d) = (c): CUDA graphs need CUDA"
        if result.get("graphed_equals_tuned")
        else "(d) (c) + fused capturable AdamW, whole step in one CUDA graph"
    )
    lines = [
        f"device: {result['device']} | batch {result['batch']} x seq {result['seq_len']} | "
        f"vocab {result['vocab']} | own batch {result['own_batch']} | tokens/s (k, M) | median of "
        f"{result.get('repeat', 1)}",
        f"(a) trainer  (b) textbook fp32 eager  (c) textbook with {tuned}  {graphed} | "
        "MFU of dense bf16 peak",
    ]
    lines += [format_row(r) for r in result["rows"]]
    return "\n".join(lines)
