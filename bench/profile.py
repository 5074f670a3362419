"""``python -m bench.profile``: where one training step's device time goes, per kernel.

    python -m bench.profile --size 1M --steps 5      # trainer (a), tuned (c), graphed (d)
    python -m bench.profile --size 1M --only trainer # the trainer's step alone

Prints ``torch.profiler``'s table of kernels by total device time for each, after a warm-up,
and on CUDA the kernels' time per step by group (``bench.kernel_groups``: matmul, attention, head
and cross-entropy, optimizer, copies, norms and other elementwise); the graphed textbook step
(d) only on CUDA.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from bench.columns import Step, graphed, textbook, trainer_step
from bench.device import free, synchronize
from bench.kernel_groups import format_groups, group_times
from bench.run import CORPUS_TOKENS, LADDER, model_config
from study.cli import ArgumentParser
from study.device import resolve_device
from study.errors import cli_main


@cli_main
def main(argv: list[str] | None = None) -> int:
    p: argparse.ArgumentParser = ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--size", default="1M", choices=LADDER.names)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rows", type=int, default=25, help="kernels shown")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--only", default="trainer,tuned,graphed", help="steps profiled, of trainer,tuned,graphed"
    )
    args = p.parse_args(argv)
    only = [name for name in args.only.split(",") if name]
    if not only or set(only) - {"trainer", "tuned", "graphed"}:
        p.error(f"--only takes trainer, tuned and graphed; got {args.only!r}")
    device = resolve_device(args.device)
    mc = model_config(args.size)
    tokens = torch.randint(0, mc.vocab_size, (CORPUS_TOKENS,), dtype=torch.int32).to(device)
    builds: dict[str, Callable[[], Step]] = {
        "trainer": lambda: trainer_step(mc, device=device, tokens=tokens, batch=args.batch)[0],
        "tuned": lambda: textbook(mc, device=device, tokens=tokens, batch=args.batch, tuned=True),
    }
    if device.type == "cuda":
        builds["graphed"] = lambda: graphed(mc, device=device, tokens=tokens, batch=args.batch)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    for name, build in builds.items():
        if name not in only:
            continue
        free(device)
        step = build()
        for _ in range(8):
            step()
        synchronize(device)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(args.steps):
                step()
            synchronize(device)
        key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(f"==== {name} {args.size} batch {args.batch}: {args.steps} steps")
        averages = prof.key_averages()
        print(averages.table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
        if device.type == "cuda":
            kernels = [
                (e.key, e.self_device_time_total / 1e6)
                for e in averages
                if e.device_type == torch.autograd.DeviceType.CUDA
            ]
            print(format_groups(group_times(kernels), steps=args.steps))
        del step
    return 0


if __name__ == "__main__":
    sys.exit(main())
