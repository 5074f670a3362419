"""sweeps.default: the five-minute study's search space covers its ranges with valid configs."""

from __future__ import annotations

import math

from test_sweeps import sample_configs

from sweeps.default import WIDTHS, n_head_for


def test_default_space_covers_its_ranges_with_valid_configs() -> None:
    found = sample_configs("default", 60)
    for c in found:
        c.validate()
        assert (c.budget, c.data, c.device, c.seed) == (30.0, "corpus.txt", "cpu", 7)
        assert 1 <= c.model.n_layer <= 6 and 1e-4 <= c.lr <= 1e-2
        assert c.model.d_model % c.model.n_head == 0
    assert {c.model.pos for c in found} == {"learned", "rope"}
    assert {c.model.mlp for c in found} == {"swiglu", "gelu"}
    assert {c.model.n_layer for c in found} == set(range(1, 7))
    assert {c.optimizer for c in found} == {"adamw", "muon"}
    assert {c.schedule for c in found} == {"cosine", "wsd"}
    assert {c.model.embed_shortcut for c in found} == {False, True}
    widths = sorted({c.model.d_model for c in found})
    assert widths[0] <= 96 and widths[-1] >= 512
    lrs = [math.log10(c.lr) for c in found]
    assert min(lrs) < -3.3 and max(lrs) > -2.7  # log-uniform: both decades reached


def test_default_space_searches_weight_decay_and_dropout() -> None:
    """A fast device repeats its data many times: regularisation is part of the answer."""
    found = sample_configs("default", 60)
    decays = [math.log10(c.weight_decay) for c in found]
    assert all(-2 <= d <= math.log10(3.0) for d in decays)
    assert min(decays) < -1.3 and max(decays) > 0.0  # log-uniform over 0.01-3
    dropouts = [c.model.dropout for c in found]
    assert all(0.0 <= p <= 0.3 for p in dropouts)
    assert min(dropouts) < 0.05 and max(dropouts) > 0.25


def test_heads_are_32_wide_below_256_and_64_from_there() -> None:
    assert [n_head_for(d) for d in WIDTHS] == [2, 3, 4, 6, 4, 6, 8]
    for d in WIDTHS:
        assert (d // n_head_for(d)) % 2 == 0  # rope needs an even head dimension
