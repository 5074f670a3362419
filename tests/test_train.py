from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.config import ModelConfig, TrainConfig
from study.fmt import fmt_count
from study.models import build_model
from study.training.trainer import train

REPO = Path(__file__).resolve().parents[1]


def tiny_config(data: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        model=ModelConfig(n_layer=2, d_model=64, n_head=4, vocab_size=1024, seq_len=64),
        budget=4.0,
        data=str(data),
        device="cpu",
        batch_size=16,
        lr=3e-3,
        eval_tokens=4096,
        curve_points=4,
        sample_tokens=16,
    )
    return base.replace(**changes)


# ----------------------------------------------------------------------------- real runs


@pytest.mark.slow
def test_short_real_run(tinystories: Path, cache_dir: Path) -> None:
    config = tiny_config(tinystories, budget=6.0)
    events: list[str] = []

    class Sink:
        def write(self, s: str) -> None:
            events.append(s)

        def flush(self) -> None:
            pass

    result = train(config, cache_dir=cache_dir, events=Sink(), out=None)  # type: ignore[arg-type]
    curve = result.curve
    assert len(curve) == config.curve_points
    # The loss fell: from about ln(V) at the start to clearly below it at the end.
    first_loss = json.loads(next(e for e in events if '"progress"' in e))["train_loss"]
    assert curve[-1]["train_loss"] < first_loss - 0.5
    assert result.val_loss < math.log(1024) - 1.0
    # The budget held: training stopped within one step of the budget.
    step_time = result.train_seconds / result.steps
    assert config.budget <= result.train_seconds <= config.budget + 2 * step_time + 0.5
    assert result.val_ppl == pytest.approx(math.exp(result.val_loss))
    assert 0 < result.val_bpb < result.val_loss / math.log(2)  # more than one byte per token
    assert result.params == sum(p.numel() for p in build_model(config.model).parameters())
    assert result.tokens_seen == result.steps * 16 * 64
    assert [p["elapsed_s"] for p in curve] == sorted(p["elapsed_s"] for p in curve)
    assert all(p["val_loss"] is not None and math.isfinite(p["val_loss"]) for p in curve)
    # One evaluation protocol: every point scored on the final point's 4,096 targets.
    assert result.eval_tokens == 4096 and all(p["eval_tokens"] == 4096 for p in curve)
    assert curve[-1]["val_loss"] == result.val_loss
    assert result.eval_seconds is not None and result.eval_seconds > 0
    # Repetition recorded: U and D / U.
    assert result.unique_tokens is not None and result.unique_tokens > 100_000
    assert result.epochs == pytest.approx(result.tokens_seen / result.unique_tokens)
    assert result.sample.startswith(config.prompt) and len(result.sample) > len(config.prompt)
    assert result.config == config.to_dict()


@pytest.mark.slow
def test_curve_point_and_final_point_agree_on_an_unchanged_model(
    tinystories: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the optimizer's step a no-op the model never changes, so every curve point, taken
    mid-run, must read exactly the final evaluation's number: the same windows, one protocol."""
    monkeypatch.setattr("study.training.optim.ForeachAdamW.step", lambda self: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order for every evaluation
    try:
        result = train(
            tiny_config(tinystories, budget=2.0, curve_points=3, eval_tokens=2048),
            cache_dir=cache_dir,
            out=None,
        )
    finally:
        torch.set_num_threads(threads)
    values = [p["val_loss"] for p in result.curve]
    assert len(values) == 3 and values == [result.val_loss] * 3
    assert all(p["eval_tokens"] == 2048 for p in result.curve)
    assert result.val_loss == pytest.approx(math.log(1024), rel=0.05)  # untrained: about ln V


class ReadTickClock:
    """A clock whose every read while running advances it ``tick`` seconds: the budget runs out
    at a read chosen by ``tick``, sometimes between a step's reading of the time and the loop's
    next check of it."""

    def __init__(self, budget: float, tick: float) -> None:
        self.budget, self.tick, self.now, self.running = budget, tick, 0.0, False

    def start(self) -> None:
        self.running = True

    resume = start

    def pause(self) -> None:
        self.running = False

    @property
    def elapsed(self) -> float:
        if self.running:
            self.now += self.tick
        return self.now


@pytest.mark.slow
def test_every_curve_point_is_taken_wherever_the_budget_runs_out(
    tinystories: Path, cache_dir: Path
) -> None:
    """However the last step's reading of the clock and the loop's check of it fall around the
    budget, a run ends with all its curve points, the last at the budget (a trial once stored
    three of four when the budget ran out between the two)."""
    from study.events import Events
    from study.training.setup import Job
    from study.training.trainer import Run

    config = tiny_config(tinystories, budget=1.0, curve_points=4, eval_tokens=512)
    job = Job.prepare(config, cache_dir=cache_dir)
    for tick in (0.011, 0.013, 0.017, 0.019, 0.023, 0.029, 0.031, 0.037, 0.041, 0.043):
        run = Run(job, events=Events(None), log_interval=10.0, out=None)
        run.clock = ReadTickClock(config.budget, tick)  # type: ignore[assignment]
        run.loop()
        assert [
            round(p["elapsed_s"] / config.budget * 4, 6) >= k
            for k, p in enumerate(run.curve, start=1)
        ] == [True] * 4, (tick, run.curve)
        assert run.curve[-1]["elapsed_s"] == config.budget, (tick, run.curve[-1])


def run_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "study.train", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_writes_result_json(tinystories: Path, cache_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    events = tmp_path / "events.jsonl"
    proc = run_cli(
        "--budget",
        "3",
        "--data",
        str(tinystories),
        "--device",
        "cpu",
        "--n-layer",
        "1",
        "--d-model",
        "32",
        "--n-head",
        "2",
        "--vocab-size",
        "1024",
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--pos",
        "rope",
        "--mlp",
        "gelu",
        "--eval-tokens",
        "2048",
        "--curve-points",
        "3",
        "--sample-tokens",
        "8",
        "--dropout",
        "0.1",
        "--json",
        str(out),
        "--events",
        str(events),
        "--cache-dir",
        str(cache_dir),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for key in (
        "val_loss",
        "val_ppl",
        "val_bpb",
        "params",
        "params_nonembedding",
        "flops_per_token",
        "tokens_seen",
        "tokens_per_second",
        "train_seconds",
        "steps",
        "device",
        "curve",
        "sample",
        "config",
    ):
        assert key in result
    assert result["config"]["model"]["pos"] == "rope"
    assert result["config"]["model"]["dropout"] == 0.1
    assert result["device"] == "cpu"
    assert result["val_ppl"] == pytest.approx(math.exp(result["val_loss"]))
    assert result["tokens_seen"] == result["steps"] * 8 * 32 and result["steps"] > 0
    assert result["train_seconds"] >= 3.0 and result["tokens_per_second"] > 0
    assert len(result["curve"]) == 3 and result["curve"][-1]["val_loss"] == result["val_loss"]
    kinds = [json.loads(line)["kind"] for line in events.read_text().splitlines()]
    assert kinds.count("curve") == 3 and "progress" in kinds and kinds[-1] == "final"
    assert "| step" in proc.stdout and "sample:" in proc.stdout
    # One number format (study.fmt): counts read 45.2k, never 45,213 or 4.52e+04.
    lines = proc.stdout.splitlines()
    progress = [line for line in lines if "| step" in line]
    assert progress and all(
        re.fullmatch(
            r" *\d+\.\d/3s \| step +\d+ \| loss \d+\.\d{4} \| lr \d\.\d\de[+-]\d\d \| "
            r"\d+(\.\d+)?[kMG] tok/s",
            line,
        )
        for line in progress
    ), progress
    summary = next(line for line in lines if line.startswith("val loss"))
    assert (
        f"| params {fmt_count(result['params'])} | {fmt_count(result['tokens_seen'])} tokens ("
    ) in summary, summary
    assert f"| {fmt_count(result['tokens_per_second'])} tok/s |" in summary, summary
    assert re.search(r"params \d+(\.\d+)?k \|", summary), summary  # a tiny model: tens of k


@pytest.mark.slow
def test_cli_diverged_and_oom(tinystories: Path, cache_dir: Path, tmp_path: Path) -> None:
    common = [
        "--budget",
        "3",
        "--data",
        str(tinystories),
        "--device",
        "cpu",
        "--n-layer",
        "1",
        "--d-model",
        "32",
        "--n-head",
        "2",
        "--vocab-size",
        "1024",
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--cache-dir",
        str(cache_dir),
    ]
    out = tmp_path / "r.json"
    proc = run_cli(*common, "--lr", "1e6", "--grad-clip", "0", "--json", str(out))
    assert proc.returncode == 3, proc.stderr
    assert json.loads(out.read_text())["error"] == "diverged"
    assert "Traceback" not in proc.stderr

    env_proc = subprocess.run(
        [sys.executable, "-m", "study.train", *common, "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**__import__("os").environ, "STUDY_FAULT_OOM_AT_STEP": "2"},
    )
    assert env_proc.returncode == 4, env_proc.stderr
    assert json.loads(out.read_text())["error"] == "oom"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--data", "/no/such/corpus"], "/no/such/corpus"),
        (["--budget", "0"], "budget"),
        (["--budget", "-5"], "budget"),
        (["--d-model", "30", "--n-head", "4"], "divisible"),
        (["--vocab-size", str(2**33)], "vocab_size"),
        (["--n-layer", "0"], "n_layer"),
        (["--lr", "-1"], "lr"),
        (["--pos", "sinusoid"], "sinusoid"),
        (["--dropout", "1.5"], "dropout"),
        (["--device", "tpu"], "tpu"),
        (["--not-a-flag"], "not-a-flag"),
    ],
)
@pytest.mark.slow
def test_bad_input_exits_2(args: list[str], needle: str, tmp_path: Path) -> None:
    proc = run_cli("--device", "cpu", *args) if "--device" not in args else run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr
    assert needle in lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.slow
def test_absent_cuda_exits_2(tinystories: Path) -> None:
    proc = run_cli("--device", "cuda", "--data", str(tinystories))
    assert proc.returncode == 2
    assert "cuda" in proc.stderr.lower() and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_empty_corpus_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    proc = run_cli("--device", "cpu", "--data", str(empty), "--cache-dir", str(tmp_path / "c"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_short_run(tinystories: Path, cache_dir: Path) -> None:
    result = train(
        tiny_config(tinystories, device="cuda", budget=5.0), cache_dir=cache_dir, out=None
    )
    assert result.device == "cuda" and math.isfinite(result.val_loss)


# ----------------------------------------------------------------------------- warm start


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [
        ("{not json", "the config on stdin"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"budget": -1}', "budget"),
    ],
)
@pytest.mark.slow
def test_config_from_stdin_refuses_bad_input_in_one_line(stdin: str, needle: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "study.train", "--config-from-stdin", "--device", "cpu"],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr


@pytest.mark.slow
def test_config_from_stdin_exits_0_when_no_trial_comes() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "study.train", "--config-from-stdin", "--device", "cpu"],
        input="",
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def compile_steps(*, compile: bool, cuda_graph: bool, shapes: list[tuple[int, int]]) -> list[bool]:
    """``Run.compiles`` for a sequence of step shapes under a plan of the given kind."""
    from types import SimpleNamespace

    from study.training.trainer import Run

    run = Run.__new__(Run)  # only the fields compiles() reads
    plan = SimpleNamespace(compile=compile, cuda_graph=cuda_graph)
    run.job = SimpleNamespace(step_fn=SimpleNamespace(plan=plan))  # type: ignore[assignment]
    run._shape, run._compile_steps_left = None, 0
    return [run.compiles(shape) for shape in shapes]


def test_compile_steps_are_the_first_at_each_shape() -> None:
    from study.training.step import GRAPH_WARMUP

    a, b = (16, 64), (32, 32)
    shapes = [a] * 6 + [b] * 6
    assert compile_steps(compile=False, cuda_graph=False, shapes=shapes) == [False] * 12
    assert compile_steps(compile=True, cuda_graph=False, shapes=shapes) == (
        [True] + [False] * 5 + [True] + [False] * 5
    )
    graphed = [True] * (GRAPH_WARMUP + 1) + [False] * (5 - GRAPH_WARMUP)
    assert compile_steps(compile=True, cuda_graph=True, shapes=shapes) == graphed * 2


@pytest.mark.slow
def test_result_records_where_the_seconds_went(tinystories: Path, cache_dir: Path) -> None:
    result = train(
        tiny_config(tinystories, budget=2.0, curve_points=2), cache_dir=cache_dir, out=None
    )
    assert result.compile_seconds == 0.0  # an eager CPU step
    assert result.setup_seconds is not None and result.setup_seconds > 0
    assert result.sample_seconds is not None and result.sample_seconds > 0
    assert result.eval_seconds is not None and result.eval_seconds > 0
    assert result.outside_seconds is None  # only a parent that timed the process knows it
