"""``python -m bench.recipes``: the trainer's step rate with AdamW, Muon, and Muon with the
speedrun switches, on rungs of the GPU ladder (random tokens on the device, the trainer's own
plan: compile, CUDA graph, fused head), so Muon's cost per token shows beside AdamW's. Each
embedding switch has a recipe of its own (``shortcut``, ``value-embeds``) and both ride with
Muon and the modern switches in ``muon+modern+embeds``.

python -m bench.recipes --sizes L3-d128,L5-d256 --json /tmp/recipes.json
python -m bench.recipes --sizes L3-d128 --recipes adamw,shortcut,value-embeds
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from bench.timing import time_steps
from study.cli import ArgumentParser
from study.config import TrainConfig
from study.errors import UsageError, cli_main
from study.models import build_model, count_params
from study.outputs import add_force_arg, check_output
from study.training.step import TrainStep
from sweeps.ladder_gpu import LADDER, SIZES

MODERN = {
    "mlp": "relu2",
    "norm": "rmsnorm",
    "qk_norm": True,
    "untied_head": True,
    "logit_softcap": 15.0,
    "zero_init_proj": True,
}
EMBEDS = {"embed_shortcut": True, "value_embeds": 1}  # one table: every rung has a layer for it
RECIPES: dict[str, dict[str, object]] = {
    "adamw": {},
    "muon": {"optimizer": "muon"},
    "muon+modern": {"optimizer": "muon", **MODERN},
    "shortcut": {"embed_shortcut": True},
    "value-embeds": {"value_embeds": 1},
    "muon+modern+embeds": {"optimizer": "muon", **MODERN, **EMBEDS},
}


def recipe_configs(sizes: str, recipes: str, *, device: str) -> list[tuple[str, str, TrainConfig]]:
    """(size, recipe, config) of every cell, all checked before any is measured.

    Raises:
        UsageError: an unknown size or recipe, or a config that does not validate.
    """
    names, rungs = recipes.split(","), sizes.split(",")
    for what, asked, known in (("recipe", names, RECIPES), ("size", rungs, SIZES)):
        unknown = [n for n in asked if n not in known]
        if unknown:
            raise UsageError(
                f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}"
            )
    cells = []
    for size in rungs:
        base = dataclasses.replace(LADDER.config(size), device=device)
        for name in names:
            config = base.replace(**RECIPES[name])
            config.validate()
            cells.append((size, name, config))
    return cells


def measure(
    config: TrainConfig, *, batch: int, device: torch.device, seconds: float
) -> dict[str, Any]:
    """Steady-state tokens per second of ``config``'s training step (after 30 warm-up steps:
    compile, graph capture)."""
    torch.manual_seed(0)
    model = build_model(config.model).to(device)
    tokens = torch.randint(0, config.model.vocab_size, (5_400_000,), dtype=torch.int32)
    step = TrainStep(model, config, device=device, tokens=tokens.to(device), batch_size=batch)
    seq_len = config.model.seq_len
    t = time_steps(
        lambda: step(lr=config.lr, seq_len=seq_len),
        device=device,
        warmup=30,
        min_steps=40,
        min_seconds=seconds,
    )
    loss, bad = step.read_loss()
    return {
        "params": count_params(config.model).total,
        "plan": step.plan.describe(),
        "tokens_per_s": t.tokens_per_s,
        "step_ms": t.step_ms,
        "warmup_s": t.warmup_s,
        "train_loss": loss,
        "diverged": bad,
    }


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m bench.recipes", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="L3-d128,L5-d256", help="GPU ladder rungs, comma-separated")
    p.add_argument("--recipes", default=",".join(RECIPES), help="of " + ", ".join(RECIPES))
    p.add_argument("--batch", type=int, default=256, help="rows per step (default: 256)")
    p.add_argument("--seconds", type=float, default=5.0, help="timed seconds per cell")
    p.add_argument("--json", type=Path, help="write the rows here")
    add_force_arg(p)
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_output(args.json, what="--json", kind="json", force=args.force)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for size, name, config in recipe_configs(args.sizes, args.recipes, device=device.type):
        row = {
            "size": size,
            "recipe": name,
            **measure(config, batch=args.batch, device=device, seconds=args.seconds),
        }
        rows.append(row)
        print(
            f"{size:8} {name:18} {row['params'] / 1e6:5.2f}M "
            f"{row['tokens_per_s'] / 1e6:7.3f} Mtok/s {row['step_ms']:7.2f} ms/step "
            f"warm-up {row['warmup_s']:5.1f}s loss {row['train_loss']:.3f} | {row['plan']}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
