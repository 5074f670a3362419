"""``python -m bench``: its baseline model, its options and the table it writes (no timings are
asserted: the benchmark measures speed, the tests only what it reports and how)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.__main__ import main, parse_variant
from bench.run import LADDER, Timing, format_table, median_timing, model_config
from bench.textbook import TextbookGPT, textbook_step
from study.errors import UsageError
from study.models import build_model, count_params

REPO = Path(__file__).resolve().parents[1]


def test_ladder_sizes_are_as_named() -> None:
    targets = {"0.4M": 0.4e6, "1M": 1e6, "2M": 2e6, "4M": 4e6, "12M": 12e6}
    assert list(LADDER) == list(targets)
    for name, target in targets.items():
        mc = model_config(name)
        params = count_params(mc).total
        assert 0.9 * target <= params <= 1.2 * target, (name, params)
        assert mc.d_model // mc.n_head == 32 and mc.vocab_size == 4096 and mc.seq_len == 256


def test_textbook_model_matches_the_trainers_shape() -> None:
    mc = model_config("0.4M")
    torch.manual_seed(0)
    textbook = TextbookGPT(n_layer=mc.n_layer, d_model=mc.d_model, n_head=mc.n_head,
                           vocab_size=mc.vocab_size, seq_len=mc.seq_len)
    ours = build_model(mc)
    biases = sum(p.numel() for n, p in textbook.named_parameters() if n.endswith("bias"))
    # The same weights but GPT-2's biases (linear and LayerNorm), the embedding tied once.
    assert sum(p.numel() for p in textbook.parameters()) - biases == sum(
        p.numel() for p in ours.parameters())
    assert textbook.lm_head.weight is textbook.wte.weight
    x, y = torch.randint(0, mc.vocab_size, (2, 2, 32))
    loss = textbook(x, y)
    assert loss.item() == pytest.approx(math.log(mc.vocab_size), abs=0.1)  # uniform at init


def test_textbook_step_trains() -> None:
    torch.manual_seed(0)
    model = TextbookGPT(n_layer=1, d_model=32, n_head=2, vocab_size=64, seq_len=16)
    x = torch.randint(0, 64, (8, 16))
    batch = (x, torch.roll(x, -1, dims=1))
    step = textbook_step(model, lambda: batch, device=torch.device("cpu"), lr=1e-2)
    before = model(*batch).item()
    for _ in range(20):
        step()
    assert model(*batch).item() < before - 0.5
    assert all(p.grad is None for p in model.parameters())  # the step zeroes its gradients


def test_parse_variant() -> None:
    v = parse_variant("big:ce_chunk=4096,cuda_graph=0,batch=512,sdpa=flash,autocast=bf16")
    assert v.name == "big" and v.batch == 512 and v.sdpa == "flash"
    assert v.plan == {"ce_chunk": 4096, "cuda_graph": False, "autocast": torch.bfloat16}
    assert parse_variant("plain:").plan == {}
    for bad in (":ce_chunk=1", "x:ce_chunk", "x:ce_chunk=many", "x:colour=red", "x:sdpa=magic"):
        with pytest.raises(UsageError):
            parse_variant(bad)


def test_median_timing_keeps_the_middle_and_skips_failures() -> None:
    def t(rate: float) -> Timing:
        return Timing(tokens_per_s=rate, step_ms=1.0, steps=1, warmup_s=0.0)

    assert median_timing([t(3), t(1), t(2)]).tokens_per_s == 2  # type: ignore[union-attr]
    assert median_timing([t(3), "OutOfMemoryError", t(1)]).tokens_per_s == 1  # type: ignore[union-attr]
    assert median_timing(["RuntimeError: x"]) == "RuntimeError: x"


def test_one_size_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["--device", "cpu", "--sizes", "0.4M", "--batch", "1", "--warmup", "1",
                 "--min-steps", "1", "--min-seconds", "0", "--repeat", "2",
                 "--variant", "plain:ce_chunk=0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device_type"] == "cpu" and result["batch"] == 1 and result["repeat"] == 2
    (row,) = result["rows"]
    assert row["size"] == "0.4M" and row["params"] == count_params(model_config("0.4M")).total
    for key in ("trainer", "textbook", "tuned", "own"):
        assert row[key]["tokens_per_s"] > 0 and row[key]["steps"] >= 1, key
        assert row[key]["mfu"] is None  # no known peak for a CPU
    assert row["a_over_b"] == pytest.approx(
        row["trainer"]["tokens_per_s"] / row["textbook"]["tokens_per_s"])
    assert row["a_over_c"] == pytest.approx(
        row["trainer"]["tokens_per_s"] / row["tuned"]["tokens_per_s"])
    assert len(row["samples_tokens_per_s"]["trainer"]) == 2
    assert "fused-ce" in row["trainer_plan"]
    (variant,) = result["variants"]
    assert variant["variant"] == "plain" and "plain-ce" in variant["plan"]
    assert variant["timing"]["tokens_per_s"] > 0
    printed = capsys.readouterr().out
    assert format_table(result).splitlines()[-1] in printed and str(out) in printed


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--sizes", "3M"], "3M"),
        (["--columns", "a,z"], "columns"),
        (["--batch", "0"], "batch"),
        (["--variant", "x:colour=red"], "colour"),
        (["--device", "tpu"], "tpu"),
    ],
)
def test_bad_input_exits_2(args: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--device", "cpu", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_committed_results_are_complete() -> None:
    """The JSON tables under bench/results name their device and hold every ladder size."""
    files = sorted((REPO / "bench" / "results").glob("*.json"))
    tables = [json.loads(f.read_text()) for f in files if "variants" not in f.name]
    assert {t["device_type"] for t in tables} >= {"cuda"}
    for table in tables:
        assert table["device"] and table["batch"] >= 1
        assert [r["size"] for r in table["rows"]] == list(LADDER)
        for row in table["rows"]:
            assert row["a_over_b"] > 0 and row["a_over_c"] > 0
