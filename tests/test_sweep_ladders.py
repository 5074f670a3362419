"""sweeps.ladders: one factory builds every size ladder (the sweeps' and the bench's)."""

from __future__ import annotations

import optuna
import pytest

from study.config import ModelConfig
from study.errors import UsageError
from sweeps.default import n_head_for
from sweeps.ladders import PARAM, Ladder, lr_for

SIZES = {"small": (1, 64), "mid": (2, 128), "wide": (3, 384)}


def test_rungs_fill_in_the_template() -> None:
    ladder = Ladder(SIZES)
    assert ladder.names == ["small", "mid", "wide"]
    for name, (n_layer, d_model) in SIZES.items():
        model = ladder.model(name)
        assert (model.n_layer, model.d_model, model.n_head) == (
            n_layer,
            d_model,
            n_head_for(d_model),
        )
        assert (model.pos, model.mlp, model.arch) == ("rope", "swiglu", "gpt")
        model.validate()
    textbook = Ladder(SIZES, base=ModelConfig(pos="learned", mlp="gelu", seq_len=64), head_dim=32)
    model = textbook.model("wide")
    assert (model.n_head, model.pos, model.mlp, model.seq_len) == (12, "learned", "gelu", 64)


def test_unknown_rung_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown size 'huge'; sizes: small, mid, wide"):
        Ladder(SIZES).model("huge")


def test_learning_rate_follows_width_within_bounds() -> None:
    assert lr_for(256) == pytest.approx(3e-3)
    assert lr_for(64) == pytest.approx(6e-3) and lr_for(16) == 1e-2 and lr_for(4096) == 1e-3
    widths = [16, 64, 128, 256, 512, 2048]
    assert [lr_for(d) for d in widths] == sorted((lr_for(d) for d in widths), reverse=True)
    assert Ladder(SIZES).config("mid").lr == lr_for(128)


def test_suggest_and_sampler_walk_the_rungs_by_name() -> None:
    ladder = Ladder(SIZES)
    sampler = ladder.sampler(seed=0)
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    study = optuna.create_study(sampler=sampler)
    widths = []
    for _ in range(4):
        trial = study.ask()
        widths.append(ladder.suggest(trial).model.d_model)
        assert set(trial.params) == {PARAM} and trial.params[PARAM] in SIZES
        study.tell(trial, 1.0)
    assert widths == [64, 128, 384, 64]
