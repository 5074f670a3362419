"""The learning-rate and curriculum schedules, as functions of the elapsed budget fraction."""

from __future__ import annotations

import numpy as np
import pytest

from study.training.schedule import lr_at, seq_len_at


def test_lr_warms_up_then_decays_to_zero() -> None:
    peak = 1e-3
    assert lr_at(0.0, peak=peak, warmup_frac=0.1) == 0.0
    assert lr_at(0.05, peak=peak, warmup_frac=0.1) == pytest.approx(0.5 * peak)
    assert lr_at(0.1, peak=peak, warmup_frac=0.1) == pytest.approx(peak)
    assert lr_at(0.55, peak=peak, warmup_frac=0.1) == pytest.approx(0.5 * peak)  # cosine midpoint
    values = [lr_at(f, peak=peak, warmup_frac=0.1) for f in np.linspace(0.1, 1.0, 50)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert lr_at(1.0, peak=peak, warmup_frac=0.1) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(1.5, peak=peak, warmup_frac=0.1) == pytest.approx(0.0, abs=1e-15)
    assert lr_at(0.0, peak=peak, warmup_frac=0.0) == pytest.approx(peak)  # no warmup


def test_curriculum_lengths_follow_schedule() -> None:
    full = 256
    lengths = [seq_len_at(f, full=full, curriculum=True) for f in np.linspace(0, 1, 101)]
    assert lengths[0] == 64
    assert all(a <= b for a, b in zip(lengths, lengths[1:], strict=False))
    assert set(lengths) == {64, 128, 256}
    assert seq_len_at(0.5, full=full, curriculum=True) == full  # full length by half-way
    assert seq_len_at(0.49, full=full, curriculum=True) < full
    assert seq_len_at(0.0, full=full, curriculum=False) == full
    assert seq_len_at(0.0, full=48, curriculum=True) == 48  # shorter than the first stage
    # A length that is no power of two: the last stage is capped at the full length.
    assert {seq_len_at(f, full=200, curriculum=True) for f in np.linspace(0, 1, 101)} == {
        64,
        128,
        200,
    }


def test_wsd_warms_up_holds_then_decays_linearly() -> None:
    peak = 2e-3

    def lr(f: float) -> float:
        return lr_at(f, peak=peak, warmup_frac=0.05, schedule="wsd", cooldown_frac=0.4)

    assert lr(0.0) == 0.0
    assert lr(0.025) == pytest.approx(0.5 * peak)  # warmup
    assert lr(0.05) == pytest.approx(peak)
    assert lr(0.3) == peak and lr(0.6) == peak  # stable
    assert lr(0.7) == pytest.approx(0.75 * peak)  # a quarter into the cooldown
    assert lr(0.8) == pytest.approx(0.5 * peak)
    assert lr(0.9) == pytest.approx(0.25 * peak)
    assert lr(1.0) == 0.0 and lr(1.5) == 0.0
    # No warmup and a cooldown over the whole budget: a straight line from the peak to 0.
    assert lr_at(0.3, peak=peak, warmup_frac=0.0, schedule="wsd", cooldown_frac=1.0) == (
        pytest.approx(0.7 * peak)
    )


def test_wsd_settings_are_validated() -> None:
    from study.config import TrainConfig
    from study.errors import UsageError

    TrainConfig(schedule="wsd", warmup_frac=0.05, cooldown_frac=0.95).validate()
    for changes in (
        {"schedule": "linear"},
        {"cooldown_frac": 0.0},
        {"schedule": "wsd", "warmup_frac": 0.5, "cooldown_frac": 0.6},
    ):
        with pytest.raises(UsageError):
            TrainConfig(**changes).validate()  # type: ignore[arg-type]
