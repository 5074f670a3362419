"""The frozen configs (study.config): validation, from_dict's refusals, round trips."""

from __future__ import annotations

import dataclasses
import json

import pytest

from study.config import ModelConfig, TrainConfig
from study.errors import UsageError


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"budget": 0.0}, "budget"),
        ({"budget": float("inf")}, "budget"),
        ({"device": "tpu"}, "device"),
        ({"precision": "int8"}, "precision"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"warmup_frac": 1.0}, "warmup_frac"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"beta2": 1.0}, "beta2"),
        ({"grad_clip": -1.0}, "grad_clip"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"eval_tokens": 10}, "eval_tokens"),
        ({"curve_points": 0}, "curve_points"),
        ({"model.arch": "rnn"}, "arch"),
        ({"model.pos": "sinusoid"}, "pos"),
        ({"model.mlp": "relu"}, "mlp"),
        ({"model.n_layer": 0}, "n_layer"),
        ({"model.seq_len": 1}, "seq_len"),
        ({"model.vocab_size": 256}, "vocab_size"),
        ({"model.dropout": -0.1}, "dropout"),
        ({"model.dropout": 1.0}, "dropout"),
        ({"model.d_model": 30, "model.n_head": 4}, "divisible"),
        ({"model.d_model": 36, "model.n_head": 4, "model.pos": "rope"}, "even head"),
        ({"model.arch": "diffusion", "model.pos": "none"}, "diffusion"),
    ],
)
def test_validation_errors_are_one_line(changes: dict[str, object], needle: str) -> None:
    config = TrainConfig().replace(**changes)
    with pytest.raises(UsageError) as info:
        config.validate()
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_lstm_ignores_head_divisibility() -> None:
    TrainConfig().replace(**{"model.arch": "lstm", "model.d_model": 30}).validate()


def test_defaults_are_valid_and_round_trip() -> None:
    config = TrainConfig()
    config.validate()
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_json(json.dumps(config.to_dict())) == config
    changed = config.replace(
        **{
            "model.n_layer": 6,
            "lr": 1e-3,
            "batch_size": None,
            "compile": True,
            "data": "corpus.txt",
        }
    )
    assert TrainConfig.from_dict(json.loads(json.dumps(changed.to_dict()))) == changed


def test_replace_routes_model_fields() -> None:
    config = TrainConfig().replace(n_layer=3, **{"model.d_model": 64}, lr=1e-3)
    assert config.model.n_layer == 3 and config.model.d_model == 64 and config.lr == 1e-3
    assert dataclasses.replace(config.model, n_layer=4).n_layer == 4


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"learning_rate": 1e-3}, "learning_rate"),
        ({"model": {"layers": 2}}, "model.layers"),
        ({"lr": "fast"}, "lr"),
        ({"budget": True}, "budget"),
        ({"model": {"n_layer": 2.5}}, "model.n_layer"),
        ({"seed": None}, "seed"),
        ({"model": [1, 2]}, "model"),
    ],
)
def test_from_dict_refuses_unknown_keys_and_wrong_types(
    raw: dict[str, object], needle: str
) -> None:
    with pytest.raises(UsageError) as info:
        TrainConfig.from_dict(raw)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_from_dict_coerces_ints_to_floats_only() -> None:
    config = TrainConfig.from_dict({"budget": 60, "batch_size": None})
    assert config.budget == 60.0 and isinstance(config.budget, float)
    assert config.batch_size is None


def test_from_json_and_non_objects_are_refused() -> None:
    with pytest.raises(UsageError, match="JSON"):
        TrainConfig.from_json("{not json")
    with pytest.raises(UsageError, match="object"):
        TrainConfig.from_dict([1, 2])  # type: ignore[arg-type]
    assert TrainConfig.from_json('{"model": {"arch": "lstm"}}').model == ModelConfig(arch="lstm")


def test_curve_eval_tokens_of_old_configs_is_accepted_and_ignored() -> None:
    """Old configs (stored with trials, sweep files) name curve_eval_tokens: they still load,
    and the field reads None, so nothing claims curve points were scored on fewer tokens."""
    old = TrainConfig().to_dict() | {"curve_eval_tokens": 1024}
    config = TrainConfig.from_dict(old)
    assert config.curve_eval_tokens is None and config == TrainConfig()
    assert TrainConfig(curve_eval_tokens=512).curve_eval_tokens is None
    assert TrainConfig().to_dict()["curve_eval_tokens"] is None
    with pytest.raises(UsageError, match="curve_eval_tokens"):
        TrainConfig.from_dict({"curve_eval_tokens": "many"})  # still typed at the edge


def test_dropout_round_trips_and_old_model_configs_default_to_none() -> None:
    config = TrainConfig().replace(dropout=0.1)
    assert config.model.dropout == 0.1
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({"model": {"n_layer": 2}}).model.dropout == 0.0
