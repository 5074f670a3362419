"""Steady-state training tokens/s of the trainer against a textbook GPT-2, over a ladder of sizes.

Columns (same batch for all, ``--batch``; the steps themselves are in ``bench.columns``):

* (a) ``trainer``: the project's step exactly as trials build it, a GPT with learned positions
  and a GELU MLP, so its shape matches the baseline's.
* (b) ``textbook``: ``bench.textbook.TextbookGPT``, float32, eager, PyTorch's default AdamW.
* (c) ``tuned``: the same module as a competent user runs it: on CUDA bf16 autocast,
  ``torch.compile`` and fused AdamW; on CPU whatever of that pays (``tuned_options``).
* (d) ``graphed``: (c) with fused capturable AdamW and the whole step (forward, backward,
  optimizer) captured in one CUDA graph. CUDA only: elsewhere (d) is (c)'s figure, and the
  result says so (``graphed_equals_tuned``).
* ``own``: the trainer at its own default batch (``default_batch_size``), when that differs.

Every column is timed alike (``bench.timing.measure``). MFU is model FLOPs (the project's
``flops_per_token``) x tokens/s over the device's dense bf16 peak, where known.
"""

from __future__ import annotations

import contextlib
import platform
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from bench.columns import Step, Variant, graphed, textbook, trainer_step, tuned_options
from bench.device import device_label, peak_flops
from bench.table import RATIOS, format_row, format_variant
from bench.timing import Timing, as_json, measure, median_timing
from study.config import ModelConfig
from study.device import default_batch_size
from study.fileio import write_json
from study.models import count_params
from sweeps.ladders import Ladder

VOCAB = 4096
SEQ_LEN = 256
# GPT-2's shape (learned positions, GELU MLP), heads 32 wide: the textbook module's own shape.
LADDER = Ladder(
    {"0.4M": (3, 64), "1M": (3, 128), "2M": (4, 160), "4M": (5, 224), "12M": (6, 384)},
    base=ModelConfig(pos="learned", mlp="gelu", vocab_size=VOCAB, seq_len=SEQ_LEN),
    head_dim=32,
)
CORPUS_TOKENS = 5_400_000  # about TinyStories at vocab 4096: the size of the sampled array


def model_config(name: str) -> ModelConfig:
    """The network of ladder size ``name``.

    Raises:
        UsageError: ``name`` is not a ladder size.
    """
    return LADDER.model(name)


def column_builds(
    mc: ModelConfig,
    *,
    columns: list[str],
    tokens: torch.Tensor,
    batch: int,
    own: int,
    device: torch.device,
    plans: list[str],
) -> dict[str, Callable[[], Step]]:
    """What to measure for ``columns`` at one size, by JSON key; trainer plans go to ``plans``.

    Off CUDA, (d) needs (c) measured ("tuned"), since there (d) is (c)'s figure."""

    def trainer_at(b: int) -> Step:
        step, desc = trainer_step(mc, device=device, tokens=tokens, batch=b)
        plans.append(desc)
        return step

    def textbook_at(tuned: bool) -> Step:
        return textbook(mc, device=device, tokens=tokens, batch=batch, tuned=tuned)

    builds: dict[str, Callable[[], Step]] = {}
    if "a" in columns:
        builds["trainer"] = partial(trainer_at, batch)
    if "b" in columns:
        builds["textbook"] = partial(textbook_at, False)
    if "c" in columns or ("d" in columns and device.type != "cuda"):
        builds["tuned"] = partial(textbook_at, True)
    if "d" in columns and device.type == "cuda":
        builds["graphed"] = partial(graphed, mc, device=device, tokens=tokens, batch=batch)
    if "own" in columns and not (own == batch and "a" in columns):
        builds["own"] = partial(trainer_at, own)
    return builds


def measure_row(
    name: str,
    mc: ModelConfig,
    *,
    columns: list[str],
    tokens: torch.Tensor,
    batch: int,
    own: int,
    device: torch.device,
    repeat: int = 1,
    **kw: Any,
) -> dict[str, Any]:
    """One size: the columns asked for (each measured ``repeat`` times, the median kept),
    the trainer's rate over each baseline's and the trainer's plan."""
    counts = count_params(mc)
    fpt = counts.flops_per_token
    row: dict[str, Any] = {
        "size": name,
        "n_layer": mc.n_layer,
        "d_model": mc.d_model,
        "n_head": mc.n_head,
        "params": counts.total,
        "flops_per_token": fpt,
    }
    plans: list[str] = []
    builds = column_builds(
        mc, columns=columns, tokens=tokens, batch=batch, own=own, device=device, plans=plans
    )
    samples: dict[str, list[Timing | str]] = {key: [] for key in builds}
    for _ in range(repeat):  # round robin, so drifting machine load hits every column alike
        for key, build in builds.items():
            samples[key].append(measure(build, device=device, flops_per_token=fpt, **kw))
    got = {key: median_timing(values) for key, values in samples.items()}
    if "own" in columns and "own" not in got and "trainer" in got:
        got["own"] = got["trainer"]
    if "d" in columns and "graphed" not in got and "tuned" in got:
        got["graphed"] = got["tuned"]  # no CUDA graphs here: (d) is (c)
        if "c" not in columns:
            del got["tuned"]
    if repeat > 1:
        row["samples_tokens_per_s"] = {
            key: [v.tokens_per_s if isinstance(v, Timing) else None for v in values]
            for key, values in samples.items()
        }
    row["trainer_plan"] = plans[0] if plans else None
    for key, value in got.items():
        row[key] = as_json(value)
    a = got.get("trainer")
    for col, key in zip(RATIOS, ("textbook", "tuned", "graphed"), strict=True):
        base = got.get(key)
        if isinstance(a, Timing) and isinstance(base, Timing):
            row[f"a_over_{col}"] = a.tokens_per_s / base.tokens_per_s
    return row


def measure_variant(
    name: str,
    mc: ModelConfig,
    variant: Variant,
    *,
    tokens: torch.Tensor,
    batch: int,
    device: torch.device,
    **kw: Any,
) -> dict[str, Any]:
    """The trainer's step at one size under ``variant``: its timing and plan."""
    b = variant.batch or batch
    plans: list[str] = []

    def build() -> Step:
        step, desc = trainer_step(mc, device=device, tokens=tokens, batch=b, variant=variant)
        plans.append(desc)
        return step

    patch: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if variant.inductor:  # compiling happens in the warm-up steps, inside measure
        import torch._inductor.config as inductor_config

        patch = inductor_config.patch(variant.inductor)
    with patch:
        t = measure(
            build,
            device=device,
            flops_per_token=count_params(mc).flops_per_token,
            sdpa=variant.sdpa,
            **kw,
        )
    return {
        "size": name,
        "variant": variant.name,
        "batch": b,
        "sdpa": variant.sdpa,
        "inductor": variant.inductor,
        "plan": plans[0] if plans else None,
        "timing": as_json(t),
    }


def describe_run(*, device: torch.device, batch: int, own: int, repeat: int) -> dict[str, Any]:
    """The result's header: the device, the versions, the shapes and what each column ran."""
    return {
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
        "graphed_equals_tuned": device.type != "cuda",
        "tokens": "uniform random ids on the device (speed does not depend on the text)",
        "rows": [],
        "variants": [],
    }


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
    started = time.perf_counter()
    own = default_batch_size(device)
    torch.manual_seed(0)
    tokens = torch.randint(0, VOCAB, (CORPUS_TOKENS,), dtype=torch.int32).to(device)
    result = describe_run(device=device, batch=batch, own=own, repeat=repeat)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)

    def over_time() -> bool:
        return time.perf_counter() - started > time_limit

    def save() -> None:
        if json_path is not None:
            write_json(json_path, result)

    kw: dict[str, Any] = {
        "device": device,
        "warmup": warmup,
        "min_steps": min_steps,
        "min_seconds": min_seconds,
    }
    for name in sizes:
        if over_time():
            report(f"time limit reached; skipping {name} and later sizes")
            break
        mc = model_config(name)
        row = measure_row(
            name, mc, columns=columns, tokens=tokens, batch=batch, own=own, repeat=repeat, **kw
        )
        result["rows"].append(row)
        report(format_row(row))
        save()
        for variant in variants:
            if over_time():
                report(f"time limit reached; skipping variant {variant.name} at {name}")
                break
            entry = measure_variant(name, mc, variant, tokens=tokens, batch=batch, **kw)
            result["variants"].append(entry)
            report(format_variant(entry))
            save()
    result["seconds"] = time.perf_counter() - started
    save()
    return result
