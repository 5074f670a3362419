"""Steady-state training tokens/s of the trainer against a textbook GPT-2, over a ladder of sizes.

Columns (same batch for all three, ``--batch``):

* (a) ``trainer``: the project's step exactly as trials build it (``study.step.TrainStep`` with
  the plan ``plan_step`` picks for the device), a GPT with learned positions and a GELU MLP, so
  its shape matches the baseline's.
* (b) ``textbook``: ``bench.textbook.TextbookGPT``, float32, eager, PyTorch's default AdamW.
* (c) ``tuned``: the same module as a competent user runs it: on CUDA bf16 autocast,
  ``torch.compile`` and fused AdamW; on CPU whatever of that pays (``tuned_options``).
* ``own``: the trainer at its own default batch (``default_batch_size``), when that differs.

Each measurement warms up (compilation, graph capture), synchronises, times at least
``min_steps`` steps and ``min_seconds``, and synchronises again. MFU is model FLOPs (the
project's ``flops_per_token``) x tokens/s over the device's dense bf16 peak, where known.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from study.config import ModelConfig, TrainConfig
from study.errors import UsageError

log = logging.getLogger(__name__)

VOCAB = 4096
SEQ_LEN = 256
HEAD_DIM = 32
# name -> (n_layer, d_model); head dimension 32 throughout.
LADDER: dict[str, tuple[int, int]] = {
    "0.4M": (3, 64),
    "1M": (3, 128),
    "2M": (4, 160),
    "4M": (5, 224),
    "12M": (6, 384),
}
# Dense bf16 tensor-core peaks (vendor datasheets, SXM parts), by a substring of the device name.
PEAK_BF16_FLOPS: dict[str, float] = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12,
                                     "A100": 312e12}
CORPUS_TOKENS = 5_400_000  # about TinyStories at vocab 4096: the size of the sampled array


@dataclass(frozen=True)
class Timing:
    """One measurement: steady-state rate and what it took to get there."""

    tokens_per_s: float
    step_ms: float
    steps: int
    warmup_s: float  # first steps: compilation, autotuning, graph capture
    peak_mem_gb: float | None = None
    mfu: float | None = None


@dataclass(frozen=True)
class Variant:
    """A trainer step under test: plan fields changed, another batch, an attention backend."""

    name: str
    plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch: int | None = None
    sdpa: str | None = None


def model_config(name: str) -> ModelConfig:
    if name not in LADDER:
        raise UsageError(f"unknown size {name!r}; sizes: {', '.join(LADDER)}")
    n_layer, d_model = LADDER[name]
    return ModelConfig(n_layer=n_layer, d_model=d_model, n_head=d_model // HEAD_DIM,
                       pos="learned", mlp="gelu", vocab_size=VOCAB, seq_len=SEQ_LEN)


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def free(device: torch.device) -> None:
    """Drop compiled code and cached memory between measurements."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


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
    return Timing(tokens_per_s=tokens / elapsed, step_ms=1e3 * elapsed / steps, steps=steps,
                  warmup_s=t1 - t0, peak_mem_gb=mem)


@contextmanager
def sdpa_backend(name: str | None) -> Iterator[None]:
    if name is None:
        with nullcontext():
            yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
    with sdpa_kernel(backends[name]):
        yield


def trainer_step(
    mc: ModelConfig, *, device: torch.device, tokens: torch.Tensor, batch: int,
    variant: Variant | None = None,
) -> tuple[Callable[[], int], str]:
    """The trainer's step as ``study.trainer.train`` builds and calls it, and its plan."""
    from study.models import build_model
    from study.step import TrainStep, plan_step
    from study.trainer import lr_at

    config = TrainConfig(model=mc, device=device.type, batch_size=batch)
    torch.manual_seed(0)
    model = build_model(mc).to(device)
    model.train()
    plan = plan_step(config, device, model)
    if variant is not None and variant.plan:
        plan = dataclasses.replace(plan, **variant.plan)
    train_step = TrainStep(model, config, device=device, tokens=tokens, batch_size=batch,
                           plan=plan)
    lr = lr_at(0.5, peak=config.lr, warmup_frac=config.warmup_frac)

    def step() -> int:
        n = train_step(lr=lr, seq_len=mc.seq_len)
        train_step.diverged()  # the trainer's per-step check
        return n

    return step, plan.describe()


def tuned_options(device: torch.device) -> dict[str, bool]:
    """What a competent user turns on for baseline (c) on this device."""
    if device.type == "cuda":
        return {"bf16": True, "compile": True, "fused": True}
    return {"bf16": False, "compile": False, "fused": False}  # CPU: compile measured slower


def textbook(
    mc: ModelConfig, *, device: torch.device, tokens: torch.Tensor, batch: int, tuned: bool
) -> Callable[[], int]:
    from bench.textbook import TextbookGPT, textbook_step
    from study.step import Batches

    torch.manual_seed(0)
    model = TextbookGPT(n_layer=mc.n_layer, d_model=mc.d_model, n_head=mc.n_head,
                        vocab_size=mc.vocab_size, seq_len=mc.seq_len).to(device)
    batches = Batches(tokens, seed=0)
    opts = tuned_options(device) if tuned else {"bf16": False, "compile": False, "fused": False}

    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batches.sample(batch, mc.seq_len)
        return x.contiguous(), y.contiguous()  # as nanoGPT's get_batch stacks them

    run = textbook_step(model, sample, device=device, **opts)
    per_step = batch * mc.seq_len

    def step() -> int:
        run()
        return per_step

    return step


def measure(
    build: Callable[[], Callable[[], int]], *, device: torch.device, flops_per_token: int,
    warmup: int, min_steps: int, min_seconds: float, sdpa: str | None = None,
) -> Timing | str:
    """Build and time one step; a failure (out of memory, a compile error) comes back as text."""
    free(device)
    try:
        with sdpa_backend(sdpa):
            step = build()
            timing = time_steps(step, device=device, warmup=warmup, min_steps=min_steps,
                                min_seconds=min_seconds)
    except Exception as exc:  # noqa: BLE001 - one failed column must not lose the others
        log.warning("measurement failed: %s", exc, exc_info=True)
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    finally:
        step = None  # type: ignore[assignment]
        free(device)
    peak = peak_flops(device)
    mfu = flops_per_token * timing.tokens_per_s / peak if peak else None
    return dataclasses.replace(timing, mfu=mfu)


def as_json(t: Timing | str | None) -> dict[str, Any] | str | None:
    return dataclasses.asdict(t) if isinstance(t, Timing) else t


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def median_timing(values: list[Timing | str]) -> Timing | str:
    """The measurement with the median rate (the lower one of an even count); a failure if all
    failed."""
    ok = sorted((v for v in values if isinstance(v, Timing)), key=lambda t: t.tokens_per_s)
    return ok[(len(ok) - 1) // 2] if ok else values[0]


def measure_row(
    name: str, mc: ModelConfig, *, columns: list[str], tokens: torch.Tensor, batch: int,
    own: int, device: torch.device, repeat: int = 1, **kw: Any,
) -> dict[str, Any]:
    """One size: the columns asked for (each measured ``repeat`` times, the median kept),
    ratios and the trainer's plan."""
    from study.models import count_params

    counts = count_params(mc)
    fpt = counts.flops_per_token
    row: dict[str, Any] = {"size": name, "n_layer": mc.n_layer, "d_model": mc.d_model,
                           "n_head": mc.n_head, "params": counts.total, "flops_per_token": fpt}
    plans: list[str] = []

    def trainer_at(b: int) -> Callable[[], int]:
        step, desc = trainer_step(mc, device=device, tokens=tokens, batch=b)
        plans.append(desc)
        return step

    def textbook_at(tuned: bool) -> Callable[[], int]:
        return textbook(mc, device=device, tokens=tokens, batch=batch, tuned=tuned)

    builds: dict[str, Callable[[], Callable[[], int]]] = {}
    if "a" in columns:
        builds["trainer"] = partial(trainer_at, batch)
    if "b" in columns:
        builds["textbook"] = partial(textbook_at, False)
    if "c" in columns:
        builds["tuned"] = partial(textbook_at, True)
    if "own" in columns and not (own == batch and "a" in columns):
        builds["own"] = partial(trainer_at, own)
    samples: dict[str, list[Timing | str]] = {key: [] for key in builds}
    for _ in range(repeat):  # round robin, so drifting machine load hits every column alike
        for key, build in builds.items():
            samples[key].append(measure(build, device=device, flops_per_token=fpt, **kw))
    got = {key: median_timing(values) for key, values in samples.items()}
    if "own" in columns and "own" not in got and "trainer" in got:
        got["own"] = got["trainer"]
    if repeat > 1:
        row["samples_tokens_per_s"] = {
            key: [v.tokens_per_s if isinstance(v, Timing) else None for v in values]
            for key, values in samples.items()
        }
    row["trainer_plan"] = plans[0] if plans else None
    for key, value in got.items():
        row[key] = as_json(value)
    a, b, c = (got.get(k) for k in ("trainer", "textbook", "tuned"))
    if isinstance(a, Timing) and isinstance(b, Timing):
        row["a_over_b"] = a.tokens_per_s / b.tokens_per_s
    if isinstance(a, Timing) and isinstance(c, Timing):
        row["a_over_c"] = a.tokens_per_s / c.tokens_per_s
    return row


def measure_variant(
    name: str, mc: ModelConfig, variant: Variant, *, tokens: torch.Tensor, batch: int,
    device: torch.device, **kw: Any,
) -> dict[str, Any]:
    from study.models import count_params

    b = variant.batch or batch
    plans: list[str] = []

    def build() -> Callable[[], int]:
        step, desc = trainer_step(mc, device=device, tokens=tokens, batch=b, variant=variant)
        plans.append(desc)
        return step

    t = measure(build, device=device, flops_per_token=count_params(mc).flops_per_token,
                sdpa=variant.sdpa, **kw)
    return {"size": name, "variant": variant.name, "batch": b, "sdpa": variant.sdpa,
            "plan": plans[0] if plans else None, "timing": as_json(t)}


def run_bench(
    *,
    device: torch.device,
    sizes: list[str],
    batch: int,
    columns: list[str],
    variants: list[Variant],
    json_path: Path | None,
    warmup: int,
    min_steps: int,
    min_seconds: float,
    time_limit: float,
    repeat: int = 1,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every column for every size (and each variant), writing JSON after each size."""
    from study.cli import write_json_atomic
    from study.trainer import default_batch_size

    started = time.perf_counter()
    own = default_batch_size(device)
    torch.manual_seed(0)
    tokens = torch.randint(0, VOCAB, (CORPUS_TOKENS,), dtype=torch.int32).to(device)
    result: dict[str, Any] = {
        "device": device_label(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "seq_len": SEQ_LEN,
        "vocab": VOCAB,
        "own_batch": own,
        "repeat": repeat,
        "peak_bf16_flops": peak_flops(device),
        "tuned_options": tuned_options(device),
        "tokens": "uniform random ids on the device (speed does not depend on the text)",
        "rows": [],
        "variants": [],
    }

    def over_time() -> bool:
        return time.perf_counter() - started > time_limit

    def save() -> None:
        if json_path is not None:
            write_json_atomic(json_path, result)

    kw: dict[str, Any] = {"device": device, "warmup": warmup, "min_steps": min_steps,
                          "min_seconds": min_seconds}
    for name in sizes:
        if over_time():
            report(f"time limit reached; skipping {name} and later sizes")
            break
        mc = model_config(name)
        row = measure_row(name, mc, columns=columns, tokens=tokens, batch=batch, own=own,
                          repeat=repeat, **kw)
        result["rows"].append(row)
        report(format_row(row))
        save()
        for variant in variants:
            if over_time():
                report(f"time limit reached; skipping variant {variant.name} at {name}")
                break
            entry = measure_variant(name, mc, variant, tokens=tokens, batch=batch, **kw)
            result["variants"].append(entry)
            t = entry["timing"]
            rate = f"{t['tokens_per_s']:,.0f} tok/s" if isinstance(t, dict) else t
            report(f"  variant {variant.name:<18} batch {entry['batch']:4d}: {rate}  "
                   f"[{entry['plan']}]")
            save()
    result["seconds"] = time.perf_counter() - started
    save()
    return result


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
    ratio_b = f"{row['a_over_b']:5.2f}x" if "a_over_b" in row else "    - "
    ratio_c = f"{row['a_over_c']:5.2f}x" if "a_over_c" in row else "    - "
    return (
        f"{row['size']:>5} {row['params'] / 1e6:6.2f}M | a {_rate(row.get('trainer'))} "
        f"b {_rate(row.get('textbook'))} c {_rate(row.get('tuned'))} | a/b {ratio_b} "
        f"a/c {ratio_c} | own {_rate(row.get('own'))} | MFU a {_mfu(row.get('trainer'))} "
        f"b {_mfu(row.get('textbook'))} c {_mfu(row.get('tuned'))}"
    )


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"device: {result['device']} | batch {result['batch']} x seq {result['seq_len']} | "
        f"vocab {result['vocab']} | own batch {result['own_batch']} | tokens/s (k, M) | median of "
        f"{result.get('repeat', 1)}",
        "(a) trainer  (b) textbook fp32 eager  (c) textbook with "
        + (", ".join(k for k, v in result["tuned_options"].items() if v) or "nothing that pays")
        + " | MFU of dense bf16 peak",
    ]
    lines += [format_row(r) for r in result["rows"]]
    return "\n".join(lines)
