"""``python -m study.train``: train one model for a wall-clock budget and report how good it got.

    python -m study.train --budget 60 --data ../shared/data/tinystories --d-model 128 --json r.json

With ``--config-from-stdin`` the process warms up first (imports torch and the trainer, opens the
device, CUDA context included, warms the compiler and the GPU libraries on a probe of fixed shapes,
``study.training.warm``, and maps the token cache of ``--warm-config``, a config of the same
study), then blocks until its TrainConfig arrives as JSON on stdin: a study starts its next
trial's process this way while the current one trains (``study.orchestra.job.WarmPool``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.cli import ArgumentParser
from study.config import (
    ARCHS,
    DEVICES,
    MLP_TYPES,
    NORMS,
    OPTIMIZERS,
    POS_SCHEMES,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
)
from study.data import max_stories_arg, resolve_data, resolve_max_stories
from study.errors import UsageError, cli_main
from study.fileio import write_json
from study.fmt import fmt_count
from study.outputs import add_force_arg, check_output
from study.result import EXIT_DIVERGED, EXIT_OOM

if TYPE_CHECKING:
    from study.data import TokenData

# CLI flag -> config key (``model.`` keys live in ModelConfig).
FLAGS: dict[str, tuple[str, type, Any]] = {
    "budget": ("budget", float, None),
    "data": ("data", str, None),
    "device": ("device", str, DEVICES),
    "arch": ("model.arch", str, ARCHS),
    "n_layer": ("model.n_layer", int, None),
    "d_model": ("model.d_model", int, None),
    "n_head": ("model.n_head", int, None),
    "pos": ("model.pos", str, POS_SCHEMES),
    "mlp": ("model.mlp", str, MLP_TYPES),
    "vocab_size": ("model.vocab_size", int, None),
    "seq_len": ("model.seq_len", int, None),
    "dropout": ("model.dropout", float, None),
    "norm": ("model.norm", str, NORMS),
    "logit_softcap": ("model.logit_softcap", float, None),
    "value_embeds": ("model.value_embeds", int, None),
    "batch_size": ("batch_size", int, None),
    "lr": ("lr", float, None),
    "warmup_frac": ("warmup_frac", float, None),
    "schedule": ("schedule", str, SCHEDULES),
    "cooldown_frac": ("cooldown_frac", float, None),
    "weight_decay": ("weight_decay", float, None),
    "optimizer": ("optimizer", str, OPTIMIZERS),
    "muon_lr": ("muon_lr", float, None),
    "muon_momentum": ("muon_momentum", float, None),
    "muon_momentum_warmup": ("muon_momentum_warmup", int, None),
    "muon_weight_decay": ("muon_weight_decay", float, None),
    "grad_clip": ("grad_clip", float, None),
    "ema_decay": ("ema_decay", float, None),
    "grad_accum": ("grad_accum", int, None),
    "precision": ("precision", str, PRECISIONS),
    "seed": ("seed", int, None),
    "prompt": ("prompt", str, None),
    "sample_tokens": ("sample_tokens", int, None),
    "eval_tokens": ("eval_tokens", int, None),
    "eval_bytes": ("eval_bytes", int, None),
    "curve_points": ("curve_points", int, None),
    "steps": ("steps", int, None),
}
STEPS_HELP = (
    "train this many optimizer steps instead of --budget seconds, the schedule following the "
    "step fraction: an exact re-run of a trial (same seed, same device) (default: the budget)"
)
# Boolean model switches: flag -> help (config key model.<flag>).
SWITCHES = {
    "qk_norm": "RMSNorm of each head's query and key",
    "untied_head": "an output head of its own, not tied to the token embedding",
    "zero_init_proj": "residual projections (and an untied head) start at zero",
    "embed_shortcut": "the normed embedding mixed into every block's input by learned scalars",
}
DATA_HELP = (
    "corpus: a file or folder of .txt/.txt.xz/.txt.gz/.jsonl/.parquet, or sample (the "
    "bundled TinyStories sample) (default: TinyStories via datasets; the bundled sample "
    "when the hub cannot be reached)"
)


VALUE_EMBEDS_HELP = (
    "K embedding tables more, mixed into the attention values of the first K and the last K "
    "layers by learned scalars, at most --n-layer (default: 0, off)"
)
EVAL_BYTES_HELP = (
    "score the first whole held-out stories holding at least this many UTF-8 bytes, the same "
    "text in every vocabulary, in place of --eval-tokens tokens of this one (default: off)"
)
HELPS = {
    "data": DATA_HELP,
    "steps": STEPS_HELP,
    "value_embeds": VALUE_EMBEDS_HELP,
    "eval_bytes": EVAL_BYTES_HELP,
}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(
        prog="python -m study.train",
        description="Train one tiny language model for a wall-clock budget and evaluate it.",
        epilog="units: --budget and --log-interval in seconds, --eval-tokens and "
        "--sample-tokens in tokens, --dropout and --warmup-frac as fractions\n"
        "examples:\n"
        "  python -m study.train --budget 60 --data sample\n"
        "  python -m study.train --budget 300 --n-layer 4 --d-model 128 --n-head 4 "
        "--pos rope --mlp swiglu --json result.json\n"
        "  python -m study.train --config config.json --dropout 0.1 "
        "--weight-decay 1.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_args(p)
    _add_switch_args(p)
    _add_io_args(p)
    return p


def _add_config_args(p: argparse.ArgumentParser) -> None:
    """``--config`` and one flag per TrainConfig field of :data:`FLAGS`, each overriding it."""
    p.add_argument("--config", type=Path, help="JSON file holding a TrainConfig; flags override it")
    defaults = TrainConfig()
    for dest, (key, typ, choices) in FLAGS.items():
        default = defaults.model if key.startswith("model.") else defaults
        shown = getattr(default, key.removeprefix("model."))
        p.add_argument(
            "--" + dest.replace("_", "-"),
            dest=dest,
            type=typ,
            choices=choices,
            default=None,
            help=HELPS.get(dest, f"(default: {shown})"),
        )


def _add_switch_args(p: argparse.ArgumentParser) -> None:
    """The corpus size and the on/off switches (compile, :data:`SWITCHES`, curriculum)."""
    p.add_argument(
        "--max-stories",
        type=max_stories_arg,
        default=None,
        help="training stories to read: auto (enough that the job sees its training "
        "tokens at most ~4 times on this device, up to the whole corpus; see "
        "study.data.budget) or a number (default: auto)",
    )
    p.add_argument(
        "--compile",
        dest="compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model (default: on for CUDA only)",
    )
    for flag, what in SWITCHES.items():
        p.add_argument(
            "--" + flag.replace("_", "-"),
            dest=flag,
            action=argparse.BooleanOptionalAction,
            default=None,
            help=what + " (default: off)",
        )
    p.add_argument(
        "--curriculum",
        dest="curriculum",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="grow the sequence length from 64 to full by mid-budget",
    )


def _add_io_args(p: argparse.ArgumentParser) -> None:
    """Where the config comes from and where results, weights, events and caches go."""
    p.add_argument(
        "--config-from-stdin",
        action="store_true",
        help="warm up, then read the TrainConfig JSON from stdin (flags override it)",
    )
    p.add_argument(
        "--warm-config",
        type=Path,
        help="with --config-from-stdin: a config whose device and tokens to warm up",
    )
    p.add_argument("--json", type=Path, help="write the result object here")
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="STEM",
        help="keep the final weights as STEM.safetensors and STEM.json (config, tokenizer)",
    )
    p.add_argument("--events", type=Path, help="append progress and curve points as JSON lines")
    p.add_argument("--cache-dir", type=Path, help="tokenizer and token cache folder")
    p.add_argument("--log-interval", type=float, help="seconds between progress lines")
    p.add_argument("--quiet", action="store_true", help="no progress lines or sample")
    add_force_arg(p)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before anything is trained, an output path this job could not write
    (``study.outputs``): ``--json``, ``--events`` (appended JSON lines), ``--checkpoint``'s
    two files."""
    check_output(args.json, what="--json", kind="json", force=args.force)
    check_output(args.events, what="--events", kind="jsonl", force=args.force)
    if args.checkpoint is not None:
        stem = args.checkpoint
        for suffix, kind in ((".safetensors", "safetensors"), (".json", "json")):
            path = stem.with_name(stem.name + suffix)
            check_output(path, what="--checkpoint", kind=kind, force=args.force)


def read_config(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        UsageError: a missing or unreadable file, or JSON that is not an object.
    """
    try:
        return parse_config(path.read_text(), source=f"config {path}")
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from None


def parse_config(text: str, *, source: str) -> dict[str, Any]:
    """The JSON object in ``text`` (read from ``source``, named in the error)."""
    try:
        base = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"cannot read {source}: {exc}") from None
    if not isinstance(base, dict):
        raise UsageError(f"{source} must hold a JSON object")
    return base


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    """``base`` (else ``--config``, else the defaults) with the flags applied on top."""
    if base is None:
        base = read_config(args.config) if args.config is not None else {}
    base = {**base, "model": dict(base.get("model") or {})}
    for dest, (key, _, _) in FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if key.startswith("model."):
            base["model"][key.removeprefix("model.")] = value
        else:
            base[key] = value
    for flag in ("compile", "curriculum", "max_stories"):
        if getattr(args, flag) is not None:
            base[flag] = getattr(args, flag)
    for flag in SWITCHES:
        if getattr(args, flag) is not None:
            base["model"][flag] = getattr(args, flag)
    config = TrainConfig.from_dict(base)
    config = config.replace(data=resolve_data(config.data))  # the corpus actually read, recorded
    # auto becomes a number once, at startup, from the budget and the device (study.data.budget)
    return config.replace(
        max_stories=resolve_max_stories(
            config.data,
            max_stories=config.max_stories,
            budget=config.budget,
            device=config.device,
            cache_dir=args.cache_dir,
        )
    )


@cli_main
def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    check_outputs(args)
    data: TokenData | None = None
    if args.config_from_stdin:
        hint, data = warm_up(args)
        import_seconds = time.perf_counter() - started  # the warm-up, before the trial came
        text = sys.stdin.read()
        if not text.strip():
            return 0  # the study ended before it had a trial for this process
        config = config_from_args(args, parse_config(text, source="the config on stdin"))
        if hint is None or _tokens_key(hint) != _tokens_key(config):
            data = None
    else:
        config = config_from_args(args)
        import study.training.trainer  # noqa: F401  (timed: torch and the trainer)

        import_seconds = time.perf_counter() - started
    from study.training.trainer import Diverged, OutOfMemory, train

    events = open(args.events, "a") if args.events else None  # noqa: SIM115
    try:
        result = train(
            config,
            cache_dir=args.cache_dir,
            events=events,
            log_interval=args.log_interval,
            out=None if args.quiet else sys.stdout,
            data=data,
            checkpoint=args.checkpoint,
        )
        result = dataclasses.replace(result, import_seconds=import_seconds)
    except Diverged as exc:
        return _failed(args.json, "diverged", str(exc), EXIT_DIVERGED)
    except OutOfMemory as exc:
        return _failed(args.json, "oom", str(exc), EXIT_OOM)
    finally:
        if events is not None:
            events.close()
    if not args.quiet:
        print(
            f"val loss {result.val_loss:.4f} | val ppl {result.val_ppl:.2f} | "
            f"val bpb {result.val_bpb:.4f} | params {fmt_count(result.params)} | "
            f"{fmt_count(result.tokens_seen)} tokens ({result.epochs:.2f} epochs) | "
            f"{fmt_count(result.tokens_per_second)} tok/s | {result.steps} steps in "
            f"{result.train_seconds:.1f}s on {result.device_name}"
        )
        print(f"sample: {result.sample}")
    if args.json is not None:
        write_json(args.json, result.to_dict())
    return 0


def warm_up(args: argparse.Namespace) -> tuple[TrainConfig | None, TokenData | None]:
    """Import torch and the trainer, open the device (a CUDA context costs seconds) and map
    the tokens of ``--warm-config``; returns that config and its tokens (None, None without it).

    Raises:
        UsageError: an unreadable ``--warm-config``, a device not present.
    """
    import torch

    from study.device import resolve_device
    from study.training.setup import load_config_tokens
    from study.training.warm import warm_compiler

    hint = config_from_args(args, read_config(args.warm_config)) if args.warm_config else None
    device = resolve_device(hint.device if hint is not None else args.device or "auto")
    torch.empty(1, device=device)  # creates the CUDA context now, not when the trial starts
    # The compiler's and the GPU libraries' start-up, while the previous trial still trains.
    warm_compiler(device)
    if hint is None:
        return None, None
    return hint, load_config_tokens(hint, cache_dir=args.cache_dir)


def _tokens_key(config: TrainConfig) -> tuple[Any, ...]:
    """What decides a config's tokens: warm tokens serve a trial only when these match."""
    return (config.data, config.model.vocab_size, config.max_stories)


def _failed(path: Path | None, kind: str, reason: str, status: int) -> int:
    print(f"error: {reason}", file=sys.stderr)
    if path is not None:
        write_json(path, {"error": kind, "reason": reason})
    return status


def _exit_now(status: int) -> None:
    """End the process without Python's teardown: once the result JSON is on disk (written
    whole, fsync'd) nothing is left to do, and unwinding a CUDA context and Inductor's compile
    workers costs seconds that a study would count outside the budget."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    _exit_now(main())
