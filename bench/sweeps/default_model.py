"""A sweep file for ``python -m study.run --sweep bench/sweeps/default_model.py``: every trial is
the default model (``TrainConfig()``), so a study of several trials measures the harness (compile
seconds inside the budget, seconds outside it) on one shape, not a search."""

from __future__ import annotations

from typing import Any

from study.config import TrainConfig


def suggest(trial: Any) -> TrainConfig:
    return TrainConfig()
