"""What ``python -m study.run`` was asked for, checked before anything is written."""

from __future__ import annotations

import math
from dataclasses import dataclass

from study.config import check_budget, check_seed
from study.errors import UsageError
from study.outputs import check_output_dir
from study.storage import stale, store

# A fresh run's own file, never the shipped, tracked study.db; its folder is made on first use.
DEFAULT_STORAGE = "sqlite:///runs/study.db"


PRUNERS = ("none", "median", "hyperband")

MAX_WORKERS = 256  # worker processes on one machine (one per GPU, or a few per CPU)
MAX_STUDY_NAME = 512  # characters of Optuna's studies.study_name


def check_run_bounds(*, budget: float, seed: int, workers: int, study_name: str | None) -> None:
    """Refuse ``python -m study.run`` numbers out of bounds (named as its flags)."""
    check_budget("--budget", budget)
    check_seed("--seed", seed)
    if workers > MAX_WORKERS:
        raise UsageError(f"--workers must be at most {MAX_WORKERS}, got {workers}")
    if study_name is not None and len(study_name) > MAX_STUDY_NAME:
        # Optuna's column holds 512 characters; a server refuses more deep inside Optuna.
        raise UsageError(
            f"--study-name must be at most {MAX_STUDY_NAME} characters, got {len(study_name)}"
        )


@dataclass(frozen=True)
class RunOptions:
    """What ``python -m study.run`` was asked for; ``None`` study name means the sweep's name."""

    trials: int = 40
    budget: float = 300.0
    sweep: str = "default"
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    data: str | None = None
    device: str = "auto"
    workers: int = 1
    seed: int = 0
    pruner: str = "none"
    cache_dir: str | None = None
    max_failures: int | None = None  # None: max(10, trials)
    max_stories: int | str = "auto"  # training stories of every trial; auto: study.data.budget
    keep: str = "top-3"  # which trials' final weights stay (study.kept.checkpoint.keep_count)
    checkpoint_dir: str | None = None  # None: beside an SQLite file; a server keeps none

    def validate(self) -> None:
        if self.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {self.trials}")
        if not (math.isfinite(self.budget) and self.budget > 0):
            raise UsageError(f"--budget must be a positive number of seconds, got {self.budget:g}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")
        check_run_bounds(
            budget=self.budget, seed=self.seed, workers=self.workers, study_name=self.study_name
        )
        if self.max_failures is not None and self.max_failures < 1:
            raise UsageError(f"--max-failures must be at least 1, got {self.max_failures}")
        if self.pruner not in PRUNERS:
            raise UsageError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}")
        if self.study_name is not None and not self.study_name.strip():
            raise UsageError("--study-name must not be empty")
        stale.grace_s()  # the environment's settings, refused here before anything is written
        store.patience_s()
        check_output_dir(self.checkpoint_dir, what="--checkpoint-dir")

    @property
    def failure_limit(self) -> int:
        """Failed trials after which this run stops: ``max_failures``, or max(10, trials)."""
        return self.max_failures if self.max_failures is not None else max(10, self.trials)
