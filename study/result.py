"""What one budgeted training job produced (``python -m study.train --json`` writes this)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

# Exit statuses of ``python -m study.train`` that the study runner maps to a failed trial reason.
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_DIVERGED = 3  # loss became NaN or infinite
EXIT_OOM = 4  # the device ran out of memory


class CurvePoint(TypedDict):
    """One point of a loss curve, taken with the clock paused."""

    elapsed_s: float  # budgeted seconds so far
    tokens: int  # training tokens seen so far
    train_loss: float  # mean training loss since the previous point
    val_loss: float | None  # held-out loss; the last point's is the final evaluation's
    # Held-out targets the point was scored on: the final point's number in results of one
    # protocol; absent in results of older versions, whose curve points used fewer.
    eval_tokens: NotRequired[int]


@dataclass(frozen=True)
class TrainResult:
    """Final metrics of one job. ``val_*`` are on the fixed held-out token set.

    ``val_bpb`` is total NLL in nats / (ln 2 * UTF-8 bytes of the evaluated targets).
    ``val_is_bound`` is True when the loss is an upper bound (diffusion ELBO), not an exact NLL.
    ``curve`` holds ``CurvePoint`` s at regular budget fractions, each scored on the same
    ``eval_tokens`` held-out targets as the final point (``eval_bytes``: their UTF-8 bytes;
    ``eval_seconds``: the seconds all evaluations took, outside the budget). ``unique_tokens`` is U, the distinct training tokens
    the trial could draw from, and ``epochs`` is D / U (``tokens_seen`` / ``unique_tokens``).

    Where the seconds went: ``compile_seconds`` are the budgeted seconds of the steps that
    compiled or captured a CUDA graph (inside ``train_seconds``; 0 for an eager step); outside
    the budget, the child's own phases are ``import_seconds`` (torch and the trainer),
    ``setup_seconds`` (device, data, model, step; before the clock), ``eval_seconds`` and
    ``sample_seconds``; ``outside_seconds`` is what the parent measured from spawning the
    process to its exit, minus ``train_seconds`` (None when the job ran without a parent).
    """

    config: dict[str, Any]
    val_loss: float
    val_ppl: float
    val_bpb: float
    params: int
    params_nonembedding: int
    flops_per_token: int
    tokens_seen: int
    tokens_per_second: float
    train_seconds: float
    steps: int
    epochs: float
    batch_size: int
    device: str
    device_name: str
    versions: dict[str, str]
    sample: str
    curve: list[CurvePoint] = field(default_factory=list)
    val_is_bound: bool = False
    unique_tokens: int | None = None  # None in results of versions before it was recorded
    eval_tokens: int | None = None
    eval_bytes: int | None = None  # UTF-8 bytes of those targets (None in older results)
    eval_seconds: float | None = None
    compile_seconds: float | None = None
    import_seconds: float | None = None
    setup_seconds: float | None = None
    sample_seconds: float | None = None
    outside_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The user attributes every complete trial carries (Optuna ``trial.user_attrs``), in the order the
# analysis tables show them: the one list they are derived from (``trial_attrs``). ``config`` is
# the config itself, the names in _FROM_MODEL and _FROM_CONFIG are read from it, every other name
# is the TrainResult field of that name.
TRIAL_ATTRS = (
    "config",  # TrainConfig.to_dict(), nested
    "arch",
    "n_layer",
    "d_model",
    "n_head",
    "pos",
    "mlp",
    "lr",
    "batch_size",
    "budget",
    "params",  # total, tied embeddings counted once
    "params_nonembedding",
    "flops_per_token",
    "tokens_seen",
    "tokens_per_second",  # steady state
    "train_seconds",
    "steps",
    "epochs",  # tokens_seen / unique_tokens
    "unique_tokens",  # U: distinct training tokens the trial could draw from
    "eval_tokens",  # held-out targets of every evaluation (the final one and each curve point)
    "eval_seconds",  # seconds all evaluations took, outside the budget
    "val_loss",
    "val_ppl",
    "val_bpb",
    "val_is_bound",
    "device",  # e.g. "cuda", "cpu"
    # e.g. "NVIDIA H100 80GB HBM3", "Apple MPS (arm64)", "cpu x86_64 (AMD EPYC, bf16)"
    "device_name",
    "versions",  # {"python", "torch", "numpy", "tokenizers", "study"}
    "seed",
    "compile_seconds",  # budgeted seconds of the steps that compiled or captured a CUDA graph
    "outside_seconds",  # the trial process's wall time minus train_seconds (parent-measured)
)
_FROM_MODEL = ("arch", "n_layer", "d_model", "n_head", "pos", "mlp")
_FROM_CONFIG = ("lr", "budget", "seed")


def trial_attrs(result: TrainResult) -> dict[str, Any]:
    """The user attributes of a complete trial: exactly ``TRIAL_ATTRS``, in its order."""
    config = result.config

    def value(name: str) -> Any:
        if name == "config":
            return config
        if name in _FROM_MODEL:
            return config["model"][name]
        if name in _FROM_CONFIG:
            return config[name]
        return getattr(result, name)

    return {name: value(name) for name in TRIAL_ATTRS}
