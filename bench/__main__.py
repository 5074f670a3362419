"""``python -m bench``: measure the trainer against a textbook GPT-2 and write the table as JSON.

python -m bench                                  # every size, columns a, b, c, d and own
python -m bench --sizes 1M,2M --variant nograph:cuda_graph=0 --json /tmp/b.json
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Any

import torch

from bench.columns import Variant
from bench.device import device_label
from bench.run import LADDER, run_bench
from bench.table import COLUMN_KEYS, format_table
from study.cli import ArgumentParser
from study.device import resolve_device
from study.errors import UsageError, cli_main
from study.models.loss import CE_KERNELS
from study.outputs import add_force_arg, check_output

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = tuple(COLUMN_KEYS)
PLAN_INTS = ("ce_chunk",)
PLAN_BOOLS = (
    "compile",
    "cuda_graph",
    "fused_adamw",
    "regional",
    "autotune",
    "embed_region",
    "norm_region",
    "head_behind",
    "cudnn_attention",
)


def parse_variant(text: str) -> Variant:
    """``name:key=value,...`` with keys ce_chunk, ce_kernel (torch|rows|fused), compile,
    cuda_graph, fused_adamw, regional (0: the trunk compiled whole), autotune (Inductor's
    max-autotune), embed_region and norm_region (0: by regions, the embedding or the final norm
    eager), head_behind (0: the head's Triton kernel compiled on its first call),
    cudnn_attention (1: SDPA may pick cuDNN's attention in the step; set by sdpa), autocast
    (fp32|bf16), batch, sdpa (flash|cudnn|efficient|math), and inductor.NAME (a
    ``torch._inductor.config`` setting while the variant compiles, e.g.
    inductor.coordinate_descent_tuning=1; the trunk's own compile options,
    ``study.training.regional.compile_options``, win over a setting they name)."""
    name, _, spec = text.partition(":")
    if not name:
        raise UsageError(f"variant {text!r} needs a name: NAME:key=value,...")
    plan: dict[str, Any] = {}
    batch: int | None = None
    sdpa: str | None = None
    inductor: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"variant {name}: {item!r} is not key=value")
        try:
            if key in PLAN_INTS:
                plan[key] = int(value)
            elif key in PLAN_BOOLS:
                plan[key] = value.lower() in ("1", "true", "on", "yes")
            elif key == "autocast":
                plan[key] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[value]
            elif key == "ce_kernel" and value in CE_KERNELS:
                plan[key] = value
            elif key == "batch":
                batch = int(value)
            elif key == "sdpa" and value in ("flash", "cudnn", "efficient", "math"):
                sdpa = value
            elif key.startswith("inductor."):
                inductor[key.removeprefix("inductor.")] = inductor_value(key, value)
            else:
                raise KeyError(key)
        except (KeyError, ValueError):
            raise UsageError(f"variant {name}: bad setting {item!r}") from None
    if sdpa is not None:  # the variant's backend, not the step's own choice, is in force
        plan.setdefault("cudnn_attention", True)
    return Variant(name=name, plan=plan, batch=batch, sdpa=sdpa, inductor=inductor)


def inductor_value(key: str, text: str) -> Any:
    """``text`` as the value of Inductor setting ``key`` (inductor.NAME), typed like its
    default (a flag, a number or a string).

    Raises:
        KeyError: Inductor has no such setting.
        ValueError: ``text`` is not a value of its type.
    """
    from study.training.regional import inductor_setting

    try:
        default = inductor_setting(key.removeprefix("inductor."))
    except AttributeError:
        raise KeyError(key) from None
    if isinstance(default, bool):
        if text.lower() not in ("0", "1", "true", "false", "on", "off", "yes", "no"):
            raise ValueError(text)
        return text.lower() in ("1", "true", "on", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def default_json(device: torch.device) -> Path:
    """bench/results/<device type>-<device name>.json, e.g. cuda-nvidia-h100-80gb-hbm3.json."""
    slug = re.sub(r"[^a-z0-9]+", "-", device_label(device).lower()).strip("-")
    return RESULTS / f"{device.type}-{slug}.json"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0].strip("`"))
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--sizes", default=",".join(LADDER.names), help="comma-separated ladder sizes")
    p.add_argument(
        "--batch",
        type=int,
        help="rows per step for every column (default: 256 on CUDA, 32 elsewhere)",
    )
    p.add_argument(
        "--columns",
        default=",".join(COLUMNS),
        help=f"of {', '.join(COLUMNS)} (d off CUDA: c's figure)",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        type=parse_variant,
        help="extra trainer measurement, NAME:key=value,... (repeatable)",
    )
    p.add_argument("--json", type=Path, help="output (default: bench/results/<device>.json)")
    p.add_argument("--no-json", action="store_true", help="print only")
    add_force_arg(p)
    p.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 8 GPU, 2 CPU)")
    p.add_argument("--min-steps", type=int, help="timed steps at least (default 20 GPU, 3 CPU)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds at least")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each column this many times, round robin; keep the median",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=float("inf"),
        help="stop starting new sizes or variants after this many seconds",
    )
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sizes = [s for s in args.sizes.split(",") if s]
    unknown = [s for s in sizes if s not in LADDER.names]
    if unknown or not sizes:
        raise UsageError(
            f"unknown size(s) {', '.join(unknown) or '(none)'}; sizes: {', '.join(LADDER.names)}"
        )
    columns = [c for c in args.columns.split(",") if c]
    if not columns or set(columns) - set(COLUMNS):
        raise UsageError(f"columns must be among {', '.join(COLUMNS)}; got {args.columns!r}")
    for name in ("batch", "threads", "warmup", "min_steps", "repeat"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value}")
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = device.type == "cuda"
    json_path = None if args.no_json else (args.json or default_json(device))
    check_output(json_path, what="--json", kind="json", force=args.force, make_folder=True)
    result = run_bench(
        device=device,
        sizes=sizes,
        batch=args.batch or (256 if gpu else 32),
        columns=columns,
        variants=args.variant,
        json_path=json_path,
        warmup=args.warmup if args.warmup is not None else (8 if gpu else 2),
        min_steps=args.min_steps or (20 if gpu else 3),
        min_seconds=args.min_seconds,
        time_limit=args.time_limit,
        repeat=args.repeat,
    )
    print(format_table(result))
    if json_path is not None:
        print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
