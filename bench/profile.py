"""``python -m bench.profile``: where one training step's device time goes, per kernel.

    python -m bench.profile --size 1M --steps 5      # trainer (a) and tuned textbook (c)

Prints ``torch.profiler``'s table of kernels by total device time for each, after a warm-up.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.run import LADDER, free, model_config, synchronize, textbook, trainer_step
from study.cli import ArgumentParser
from study.errors import cli_main
from study.trainer import resolve_device


@cli_main
def main(argv: list[str] | None = None) -> int:
    p: argparse.ArgumentParser = ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--size", default="1M", choices=list(LADDER))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rows", type=int, default=25, help="kernels shown")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    mc = model_config(args.size)
    tokens = torch.randint(0, mc.vocab_size, (5_400_000,), dtype=torch.int32).to(device)
    builds = {
        "trainer": lambda: trainer_step(mc, device=device, tokens=tokens, batch=args.batch)[0],
        "tuned": lambda: textbook(mc, device=device, tokens=tokens, batch=args.batch, tuned=True),
    }
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    for name, build in builds.items():
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
        print(prof.key_averages().table(sort_by=key, row_limit=args.rows, max_name_column_width=60))
        del step
    return 0


if __name__ == "__main__":
    sys.exit(main())
