"""``python -m bench.compile_profile``: where a trial's compile seconds go, on CUDA.

    TORCHINDUCTOR_CACHE_DIR=/tmp/c/inductor TRITON_CACHE_DIR=/tmp/c/triton \\
        python -m bench.compile_profile --n-layer 4        # the default model's first trial

What a study's trial does, in one process: the compiler's warm-up (``study.training.warm``, as
a waiting trainer process does it before its config arrives), then the trial's step (the
default model, or ``--n-layer``/``--d-model``/``--mlp`` of it, at the device's default batch),
whose first ``GRAPH_WARMUP + 1`` steps are the trial's ``compile_seconds``. Prints the seconds of
the warm-up and of each of the first steps (synchronised, as the trainer times them), Dynamo's
own compile-phase times, and ``cProfile``'s functions of the compiling steps by cumulative time.
The on-disk caches are where the environment puts them: empty folders measure a first trial of a
new shape, folders a run filled measure a later trial. ``--variant`` changes the plan or
Inductor's settings as ``python -m bench --variant`` does.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import pstats
import sys
import time

import torch

from bench.__main__ import parse_variant
from bench.columns import Variant
from bench.timing import sdpa_backend
from study.cli import ArgumentParser
from study.config import TrainConfig
from study.device import default_batch_size, resolve_device
from study.errors import UsageError, cli_main
from study.models import build_model
from study.training.plan import plan_step
from study.training.step import GRAPH_WARMUP, TrainStep
from study.training.warm import warm_compiler


def build_parser() -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = ArgumentParser(prog="python -m bench.compile_profile")
    p.add_argument("--n-layer", type=int)
    p.add_argument("--d-model", type=int)
    p.add_argument("--mlp", choices=("swiglu", "gelu", "relu2"))
    p.add_argument("--steps", type=int, default=2, help="steps timed after the compiling ones")
    p.add_argument("--rows", type=int, default=40, help="profiled functions shown")
    p.add_argument("--no-profile", action="store_true", help="time only (cProfile slows Dynamo)")
    p.add_argument(
        "--variant",
        type=parse_variant,
        help="the plan and Inductor changed as python -m bench --variant takes them",
    )
    return p


def trial_config(args: argparse.Namespace) -> TrainConfig:
    """The default model's config on CUDA, with the width, depth and MLP asked for."""
    base = TrainConfig(device="cuda")
    changes = {
        k: v
        for k, v in (("n_layer", args.n_layer), ("d_model", args.d_model), ("mlp", args.mlp))
        if v is not None
    }
    config = base.replace(model=dataclasses.replace(base.model, **changes))
    config.validate()
    return config


def build_step(config: TrainConfig, variant: Variant, device: torch.device) -> TrainStep:
    """The trial's step as ``study.training.setup`` builds it, the variant's plan applied."""
    torch.manual_seed(0)
    tokens = torch.randint(0, config.model.vocab_size, (5_000_000,), dtype=torch.int32)
    tokens = tokens.to(device)
    built = time.perf_counter()
    model = build_model(config.model).to(device)
    model.train()
    batch = default_batch_size(device)
    plan = dataclasses.replace(plan_step(config, device, model), **variant.plan)
    step = TrainStep(model, config, device=device, tokens=tokens, batch_size=batch, plan=plan)
    torch.cuda.synchronize(device)
    print(
        f"model and step built: {time.perf_counter() - built:.2f}s; plan "
        f"{step.plan.describe()}; {config.model.n_layer} x {config.model.d_model} "
        f"{config.model.mlp}, batch {batch}"
    )
    return step


def time_steps(
    step: TrainStep, config: TrainConfig, *, steps: int, profile: cProfile.Profile | None
) -> list[float]:
    """Seconds of each of the first ``GRAPH_WARMUP + 1 + steps`` steps, synchronised as the
    trainer times its compiling steps; ``profile`` records the compiling ones."""
    seconds = []
    for i in range(GRAPH_WARMUP + 1 + steps):
        recording = profile if i <= GRAPH_WARMUP else None
        torch.cuda.synchronize(step.device)
        t = time.perf_counter()
        if recording is not None:
            recording.enable()
        step(lr=config.lr, seq_len=config.model.seq_len)
        torch.cuda.synchronize(step.device)
        if recording is not None:
            recording.disable()
        seconds.append(time.perf_counter() - t)
    return seconds


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    variant = args.variant or Variant(name="trainer")
    if variant.inductor:
        import torch._inductor.config as inductor_config

        inductor_config.patch(variant.inductor).__enter__()  # for the whole process
    device = resolve_device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda":
        raise UsageError("bench.compile_profile measures the CUDA step; no CUDA device here")
    config = trial_config(args)
    began = time.perf_counter()
    warm = warm_compiler(device)
    print(
        f"warm-up (before the config, in a waiting process): {warm:.2f}s "
        f"({time.perf_counter() - began:.2f}s with imports)"
    )
    step = build_step(config, variant, device)
    sdpa_backend(variant.sdpa).__enter__()  # for the whole process
    profile = None if args.no_profile else cProfile.Profile()
    seconds = time_steps(step, config, steps=args.steps, profile=profile)
    print("steps (s): " + " ".join(f"{s:.3f}" for s in seconds))
    print(
        f"compile seconds (the first {GRAPH_WARMUP + 1} steps, as a trial counts them): "
        f"{sum(seconds[: GRAPH_WARMUP + 1]):.2f}"
    )
    from torch._dynamo.utils import compile_times

    print("Dynamo's compile phases (s):")
    print(compile_times(repr="str"))
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(args.rows)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
