"""Frozen configuration dataclasses, validated at the edge (CLI, JSON, sweep file).

``ModelConfig`` says what network to build, ``TrainConfig`` how to train it for a budget,
``FixedTerms`` what every trial of a study run trains under, whatever its sweep suggests.
Unknown keys and wrong types raise :class:`~study.errors.UsageError` here, never deep inside
training.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from study.errors import UsageError

ARCHS = ("gpt", "lstm", "diffusion")
POS_SCHEMES = ("learned", "rope", "alibi", "none")
MLP_TYPES = ("swiglu", "gelu", "relu2")
NORMS = ("layernorm", "rmsnorm")
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "muon")
SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class ModelConfig:
    """The network. ``d_model`` must divide by ``n_head`` for attention models. ``dropout`` is
    the probability of each dropout (off in evaluation; 0 builds the network without any).

    The speedrun switches (``../shared/RECIPES.md``), all off by default: ``mlp`` relu2
    (``relu(x)^2``, 4x wide); ``norm`` rmsnorm (parameter-free); ``qk_norm`` (RMSNorm of each
    head's query and key); ``untied_head`` (an output matrix of its own); ``logit_softcap``
    (``c * tanh(z / c)`` on the logits, 0 off); ``zero_init_proj`` (residual projections, and
    an untied head, start at zero); ``embed_shortcut`` (the normed embedding mixed into the
    input of every block by two learned scalars per layer); ``value_embeds`` (that many more
    embedding tables mixed into the attention values of the first and last as many layers, at
    most ``n_layer``). The LSTM takes none of them; the
    diffusion denoiser takes those of the shared transformer body (all but the head's two).
    """

    arch: str = "gpt"
    n_layer: int = 4
    d_model: int = 128
    n_head: int = 4
    pos: str = "learned"
    mlp: str = "swiglu"
    vocab_size: int = 4096
    seq_len: int = 256
    dropout: float = 0.0
    norm: str = "layernorm"
    qk_norm: bool = False
    untied_head: bool = False
    logit_softcap: float = 0.0
    zero_init_proj: bool = False
    embed_shortcut: bool = False
    value_embeds: int = 0

    def validate(self) -> None:
        _choice("arch", self.arch, ARCHS)
        _choice("norm", self.norm, NORMS)
        cap = self.logit_softcap
        if not (isinstance(cap, (int, float)) and math.isfinite(cap) and cap >= 0):
            raise UsageError(f"logit_softcap must be a finite number >= 0 (0 is off), got {cap!r}")
        self._validate_switches()
        _choice("pos", self.pos, POS_SCHEMES)
        _choice("mlp", self.mlp, MLP_TYPES)
        _at_least("n_layer", self.n_layer, 1)
        _at_least("d_model", self.d_model, 1)
        _at_least("n_head", self.n_head, 1)
        _at_least("seq_len", self.seq_len, 2)
        _at_least("value_embeds", self.value_embeds, 0)
        if self.value_embeds > self.n_layer:
            raise UsageError(
                f"value_embeds must be at most n_layer ({self.n_layer}), got {self.value_embeds}"
            )
        if not (isinstance(self.dropout, (int, float)) and 0 <= self.dropout < 1):
            raise UsageError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 257 <= self.vocab_size <= 2**32 - 1:
            raise UsageError(
                f"vocab_size must be between 257 (one id per byte and one special) and 2**32 - 1, "
                f"got {self.vocab_size}"
            )
        if self.arch == "diffusion" and self.pos == "none":
            raise UsageError(
                "arch diffusion needs pos learned, rope or alibi: without causal masking, "
                "pos none cannot tell token order"
            )
        if self.arch != "lstm":
            if self.d_model % self.n_head:
                raise UsageError(
                    f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
                )
            if self.pos == "rope" and (self.d_model // self.n_head) % 2:
                raise UsageError(
                    f"rope needs an even head dimension; d_model/n_head = "
                    f"{self.d_model // self.n_head}"
                )

    def _validate_switches(self) -> None:
        """Refuse a switch on a model it does not apply to (rather than ignore it silently)."""
        body = {
            "mlp relu2": self.mlp == "relu2",
            "norm rmsnorm": self.norm != "layernorm",
            "qk_norm": self.qk_norm,
            "zero_init_proj": self.zero_init_proj,
            "embed_shortcut": self.embed_shortcut,
            "value_embeds": self.value_embeds != 0,
        }
        head = {"untied_head": self.untied_head, "logit_softcap": self.logit_softcap != 0}
        refused = {"lstm": {**body, **head}, "diffusion": head}.get(self.arch, {})
        names = [name for name, on in refused.items() if on]
        if names:
            raise UsageError(f"arch {self.arch} does not take {', '.join(names)}")


@dataclass(frozen=True)
class TrainConfig:
    """One budgeted training job. Everything needed to re-run it, apart from the data files.

    ``batch_size`` of ``None`` lets the trainer pick one that fills the device; ``compile`` of
    ``None`` lets it decide per device; ``precision`` ``auto`` is bf16 autocast on CUDA and
    on CPUs with native bf16 instructions (AVX512-BF16, AMX), float32 elsewhere.

    One evaluation protocol: every curve point and the final point are scored on the same
    ``eval_tokens`` held-out targets (the same windows). 65,536 because of what one point's noise
    measured (a 2-layer d_model-128 GPT trained 300 s on the 2-core CPU, loss 4.27; 4,000 random
    window sets of each size from the 157k-token held-out split): the sd of the loss was 4.7% of
    it at 1,024 tokens, 0.74% at 32,768 and 0.45% at 65,536, and the sd of the difference between
    two points of the trial (same windows) 0.80%, 0.13% and 0.08%. ``curve_eval_tokens`` is
    deprecated and ignored: older versions scored curve points on that many tokens and only the
    final point on ``eval_tokens``. A config that names it still loads (from JSON, a sweep, the
    constructor), and the field always reads None, so a stored config with a number there marks
    a trial of the old, mixed protocol. ``eval_bytes`` (None: off, the protocol above) scores
    the held-out text instead: the first whole held-out stories that hold at least that many
    UTF-8 bytes, the same text whatever the vocabulary (``study.training.evaluate.heldout_set``),
    ``eval_tokens`` then unused; a study of several vocabularies sets it for all its trials.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    budget: float = 300.0
    data: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    lr: float = 3e-3
    warmup_frac: float = 0.02
    schedule: str = "cosine"  # wsd: constant, then linear decay over the last cooldown_frac
    cooldown_frac: float = 0.5
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    optimizer: str = "adamw"  # muon: Muon on the hidden matrices, AdamW on the rest
    muon_lr: float = 0.02
    muon_momentum: float = 0.95
    muon_momentum_warmup: int = 300  # steps from momentum 0.85 to muon_momentum
    muon_weight_decay: float = 0.0  # decoupled: each step shrinks by muon_lr x this
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # > 0: evaluate an EMA of the weights (study.training.ema); 0 off
    grad_accum: int = 1
    precision: str = "auto"
    compile: bool | None = None
    curriculum: bool = False
    seed: int = 0
    prompt: str = "Once upon a time"
    sample_tokens: int = 120
    eval_tokens: int = 65_536
    eval_bytes: int | None = None  # the held-out text by bytes, same in every vocabulary
    curve_points: int = 10
    curve_eval_tokens: int | None = None  # deprecated, ignored (see above)
    max_stories: int | str = "auto"  # training stories read; auto: see study.data.budget
    # A fixed number of optimizer steps instead of the wall-clock budget (an exact re-run: the
    # schedule follows the step fraction); None: train for ``budget`` seconds.
    steps: int | None = None

    def __post_init__(self) -> None:
        # Deprecated: accepted so old configs load, dropped so no result claims to have used it.
        object.__setattr__(self, "curve_eval_tokens", None)

    def validate(self) -> None:
        self.model.validate()
        if not (isinstance(self.budget, (int, float)) and math.isfinite(self.budget)):
            raise UsageError(f"budget must be a finite number of seconds, got {self.budget!r}")
        if self.budget <= 0:
            raise UsageError(f"budget must be positive, got {self.budget:g} seconds")
        check_budget("budget", self.budget)
        check_seed("seed", self.seed)
        _choice("device", self.device, DEVICES)
        _choice("precision", self.precision, PRECISIONS)
        if self.batch_size is not None:
            _at_least("batch_size", self.batch_size, 1)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"lr must be a positive finite number, got {self.lr!r}")
        if not 0 <= self.warmup_frac < 1:
            raise UsageError(f"warmup_frac must be in [0, 1), got {self.warmup_frac!r}")
        _choice("schedule", self.schedule, SCHEDULES)
        if not 0 < self.cooldown_frac <= 1:
            raise UsageError(f"cooldown_frac must be in (0, 1], got {self.cooldown_frac!r}")
        if self.schedule == "wsd" and self.warmup_frac + self.cooldown_frac > 1:
            raise UsageError(
                f"warmup_frac + cooldown_frac must be <= 1 for schedule wsd, got "
                f"{self.warmup_frac:g} + {self.cooldown_frac:g}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}"
            )
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise UsageError(f"{name} must be in [0, 1), got {value!r}")
        self._validate_muon()
        if not 0 <= self.ema_decay < 1:
            raise UsageError(f"ema_decay must be in [0, 1) (0 is off), got {self.ema_decay!r}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise UsageError(f"grad_clip must be >= 0 (0 is off), got {self.grad_clip!r}")
        _at_least("grad_accum", self.grad_accum, 1)
        _at_least("sample_tokens", self.sample_tokens, 0)
        _at_least("eval_tokens", self.eval_tokens, self.model.seq_len)
        if self.eval_bytes is not None:
            _at_least("eval_bytes", self.eval_bytes, 1)
        _at_least("curve_points", self.curve_points, 1)
        if self.steps is not None:
            _at_least("steps", self.steps, 1)
        most = max_curve_points(self.budget)
        if self.curve_points > most:
            # Each point pauses the clock for an evaluation: thousands make a short budget
            # take minutes.
            raise UsageError(
                f"curve_points must be at most {most} for a {self.budget:g} s budget "
                f"(one per {1 / POINTS_PER_S:g} s, {MIN_POINTS} to {MAX_POINTS}), "
                f"got {self.curve_points}"
            )
        if self.max_stories != "auto":
            _at_least("max_stories", self.max_stories, 1)  # type: ignore[arg-type]

    def _validate_muon(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        if not (math.isfinite(self.muon_lr) and self.muon_lr > 0):
            raise UsageError(f"muon_lr must be a positive finite number, got {self.muon_lr!r}")
        if not 0 <= self.muon_momentum < 1:
            raise UsageError(f"muon_momentum must be in [0, 1), got {self.muon_momentum!r}")
        _at_least("muon_momentum_warmup", self.muon_momentum_warmup, 1)
        if not (math.isfinite(self.muon_weight_decay) and self.muon_weight_decay >= 0):
            raise UsageError(f"muon_weight_decay must be >= 0, got {self.muon_weight_decay!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with fields changed; model fields as ``model.n_layer`` or ``n_layer``."""
        model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
        top: dict[str, Any] = {}
        model: dict[str, Any] = {}
        for key, value in changes.items():
            key = key.removeprefix("model.")
            (model if key in model_fields else top)[key] = value
        new = dataclasses.replace(self, **top)
        if model:
            new = dataclasses.replace(new, model=dataclasses.replace(new.model, **model))
        return new

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Build and validate from a nested dict (as ``to_dict`` writes); unknown keys fail."""
        if not isinstance(raw, dict):
            raise UsageError(f"a config must be a JSON object, got {type(raw).__name__}")
        raw = dict(raw)
        model_raw = raw.pop("model", {})
        if not isinstance(model_raw, dict):
            raise UsageError("config key 'model' must be an object")
        model = ModelConfig(**_typed_kwargs(ModelConfig, model_raw, where="model."))
        config = cls(model=model, **_typed_kwargs(cls, raw, where="", skip={"model"}))
        config.validate()
        return config

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(raw)


MIN_BUDGET_S, MAX_BUDGET_S = 1e-3, 1e6  # a millisecond to eleven days of training
MIN_POINTS, MAX_POINTS, POINTS_PER_S = 10, 1000, 10.0  # curve points a budget may ask for
MAX_SEED = 2**32 - 1  # numpy's seeds are 32-bit; torch's would take 64, the sampler's 32


def check_budget(name: str, value: float) -> None:
    """Refuse a budget outside ``MIN_BUDGET_S`` .. ``MAX_BUDGET_S`` seconds (or not finite)."""
    if not (math.isfinite(value) and MIN_BUDGET_S <= value <= MAX_BUDGET_S):
        raise UsageError(
            f"{name} must be between {MIN_BUDGET_S:g} and {MAX_BUDGET_S:g} seconds, got {value:g}"
        )


def check_seed(name: str, value: int) -> None:
    """Refuse a seed outside 0 .. ``MAX_SEED``."""
    if not (isinstance(value, int) and 0 <= value <= MAX_SEED):
        raise UsageError(f"{name} must be an integer from 0 to {MAX_SEED}, got {value!r}")


def max_curve_points(budget: float) -> int:
    """The most curve points a ``budget``-second trial may ask for: one per 1/``POINTS_PER_S``
    seconds, at least ``MIN_POINTS`` (the default's 10 at any budget), at most ``MAX_POINTS``."""
    return int(min(MAX_POINTS, max(MIN_POINTS, budget * POINTS_PER_S)))


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, got {value!r}")


def _typed_kwargs(
    cls: type, raw: dict[str, Any], *, where: str, skip: set[str] | None = None
) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - (skip or set())
    unknown = sorted(set(raw) - names)
    if unknown:
        raise UsageError(f"unknown config key(s): {', '.join(where + u for u in unknown)}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        out[key] = _coerce(where + key, value, hints[key])
    return out


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a simple annotation; ints are accepted where floats are expected."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise UsageError(f"config key {name} must not be null")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise UsageError(f"config key {name} must be {expected}, got {value!r}")


@dataclass(frozen=True)
class FixedTerms:
    """What every trial of a study run trains under, applied on top of each suggestion: the
    budget in seconds, the corpus (resolved once, so no trial probes the hub again), the device
    and the seed. ``max_stories`` is the study's training-story limit once its token cache is
    sized; ``None`` (the probe before that) leaves the suggestion's own. ``vocab_sizes``: the
    vocabularies whose tokens the study prepared (``sweeps.Sweep.build`` refuses another);
    ``eval_bytes``, when not None, the held-out text every trial is scored on (``TrainConfig``).
    Crosses from the runner to each worker process (frozen and picklable)."""

    budget: float
    data: str | None
    device: str
    seed: int
    max_stories: int | None = None
    vocab_sizes: tuple[int, ...] | None = None
    eval_bytes: int | None = None

    def apply(self, config: TrainConfig) -> TrainConfig:
        """``config`` with these fields in place of its own (not validated here)."""
        fields: dict[str, Any] = {
            "budget": self.budget,
            "data": self.data,
            "device": self.device,
            "seed": self.seed,
        }
        if self.max_stories is not None:
            fields["max_stories"] = self.max_stories
        if self.eval_bytes is not None:
            fields["eval_bytes"] = self.eval_bytes
        return config.replace(**fields)
