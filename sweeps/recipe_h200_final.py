"""The H200 finalist: the cell of ``recipe_h200`` with the lowest bits per byte at 120 s
(``recipe-h200-120s``), trained for the study's budget (300 s) and re-run with more seeds
(``--repeat-top 1 --seeds 3``)."""

from __future__ import annotations

from typing import Any

from study.config import TrainConfig
from sweeps.recipe_h200 import PARAM, config_for

CELL = "L6-d320 do0.3"


def suggest(trial: Any) -> TrainConfig:
    return config_for(trial.suggest_categorical(PARAM, [CELL]))
