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
