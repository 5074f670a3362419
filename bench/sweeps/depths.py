"""A sweep file for ``python -m study.run --sweep bench/sweeps/depths.py``: the default model at
depths 2, 6 and 3 in turn (by trial number), at its width, so each trial is a depth not seen
before at a width seen before: with regional compilation its block loads from the compile cache."""

from __future__ import annotations

import dataclasses
from typing import Any

from study.config import TrainConfig

DEPTHS = (2, 6, 3)


def suggest(trial: Any) -> TrainConfig:
    config = TrainConfig()
    depth = DEPTHS[trial.number % len(DEPTHS)]
    return config.replace(model=dataclasses.replace(config.model, n_layer=depth))
