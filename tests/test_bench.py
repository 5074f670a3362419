"""``python -m bench`` (bench.__main__): its options and the table it writes (no timings are
asserted: the benchmark measures speed, the tests only what it reports and how). The modules
behind it have their own files, tests/test_bench_<module>.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.__main__ import COLUMNS, main, parse_variant
from bench.run import LADDER, model_config
from bench.table import format_table
from study.errors import UsageError
from study.models import count_params

REPO = Path(__file__).resolve().parents[1]


def test_parse_variant() -> None:
    v = parse_variant("big:ce_chunk=4096,cuda_graph=0,batch=512,sdpa=flash,autocast=bf16")
    assert v.name == "big" and v.batch == 512 and v.sdpa == "flash"
    assert v.plan == {
        "ce_chunk": 4096,
        "cuda_graph": False,
        "autocast": torch.bfloat16,
        "cudnn_attention": True,  # the step leaves the backend to the variant's sdpa
    }
    assert parse_variant("any:cudnn_attention=1").plan == {"cudnn_attention": True}
    assert parse_variant("plain:").plan == {}
    assert parse_variant("rows:ce_kernel=rows").plan == {"ce_kernel": "rows"}
    assert parse_variant("whole:regional=0").plan == {"regional": False}
    assert parse_variant("tuned:autotune=1").plan == {"autotune": True}
    assert parse_variant("e:embed_region=0,norm_region=0,head_behind=off").plan == {
        "embed_region": False,
        "norm_region": False,
        "head_behind": False,
    }
    v = parse_variant(
        "cd:inductor.coordinate_descent_tuning=1,inductor.triton.autotune_pointwise=no"
    )
    assert v.plan == {} and v.inductor == {
        "coordinate_descent_tuning": True,
        "triton.autotune_pointwise": False,
    }
    for bad in (
        ":ce_chunk=1",
        "x:ce_chunk",
        "x:ce_chunk=many",
        "x:colour=red",
        "x:sdpa=magic",
        "x:ce_kernel=cuda",
        "x:inductor.no_such_setting=1",
        "x:inductor.triton.no_such_setting=1",
        "x:inductor.coordinate_descent_tuning=maybe",
        "x:inductor.coordinate_descent_search_radius=wide",
    ):
        with pytest.raises(UsageError):
            parse_variant(bad)


@pytest.mark.slow
def test_one_size_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--device",
                "cpu",
                "--sizes",
                "0.4M",
                "--batch",
                "1",
                "--warmup",
                "1",
                "--min-steps",
                "1",
                "--min-seconds",
                "0",
                "--repeat",
                "2",
                "--variant",
                "plain:ce_chunk=0",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["device_type"] == "cpu" and result["batch"] == 1 and result["repeat"] == 2
    (row,) = result["rows"]
    assert row["size"] == "0.4M" and row["params"] == count_params(model_config("0.4M")).total
    assert COLUMNS == ("a", "b", "c", "d", "own")  # all five by default
    for key in ("trainer", "textbook", "tuned", "graphed", "own"):
        assert row[key]["tokens_per_s"] > 0 and row[key]["steps"] >= 1, key
        assert row[key]["mfu"] is None  # no known peak for a CPU
    # No CUDA graphs on a CPU: (d) is (c)'s very measurement, and the result says so.
    assert result["graphed_equals_tuned"] is True
    assert row["graphed"] == row["tuned"] and row["a_over_d"] == row["a_over_c"]
    assert "samples_tokens_per_s" in row and "graphed" not in row["samples_tokens_per_s"]
    assert row["a_over_b"] == pytest.approx(
        row["trainer"]["tokens_per_s"] / row["textbook"]["tokens_per_s"]
    )
    assert row["a_over_c"] == pytest.approx(
        row["trainer"]["tokens_per_s"] / row["tuned"]["tokens_per_s"]
    )
    assert len(row["samples_tokens_per_s"]["trainer"]) == 2
    assert "fused-ce" in row["trainer_plan"]
    (variant,) = result["variants"]
    assert variant["variant"] == "plain" and "plain-ce" in variant["plan"]
    assert variant["timing"]["tokens_per_s"] > 0
    printed = capsys.readouterr().out
    assert format_table(result).splitlines()[-1] in printed and str(out) in printed
    assert "(d) = (c): CUDA graphs need CUDA" in printed


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
@pytest.mark.slow
def test_bad_input_exits_2(args: list[str], needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--device", "cpu", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]


def test_committed_results_are_complete() -> None:
    """The JSON tables under bench/results name their device and hold every ladder size, or
    the sizes their name ends with (cuda-nvidia-h200-1M-2M.json: 1M and 2M)."""
    files = sorted((REPO / "bench" / "results").glob("*.json"))
    tables = {f.name: json.loads(f.read_text()) for f in files if "variants" not in f.name}
    assert {t["device_type"] for t in tables.values()} >= {"cuda"}
    assert any(len(t["rows"]) == len(LADDER.names) for t in tables.values())
    for name, table in tables.items():
        assert table["device"] and table["batch"] >= 1
        words = name.removesuffix(".json").split("-")
        named: list[str] = []
        while words and words[-1] in LADDER.names:  # the sizes the name ends with
            named.insert(0, words.pop())
        assert [r["size"] for r in table["rows"]] == (named or LADDER.names), name
        for row in table["rows"]:
            assert row["a_over_b"] > 0 and row["a_over_c"] > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "needle"), [([], "no CUDA device"), (["--variant", "x:colour=red"], "colour")]
)
def test_compile_profile_refuses_in_one_line(args: list[str], needle: str) -> None:
    """bench.compile_profile measures the CUDA step: without a GPU, or with a bad variant, one
    line and exit status 2."""
    if torch.cuda.is_available() and not args:
        pytest.skip("a CUDA device is present")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.compile_profile", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
