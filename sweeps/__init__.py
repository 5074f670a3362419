"""Search spaces: each module here defines ``suggest(trial) -> TrainConfig``.

A sweep may also define ``sampler(*, seed: int) -> optuna.samplers.BaseSampler`` to choose how its
parameters are sampled (the size ladders, built by ``sweeps.ladders``, walk their sizes in order
with ``balanced_sampler``); without one the study uses a seeded TPE sampler. The runner applies
the study-wide fields (budget, data, device, seed) on top of what ``suggest`` returns, so a sweep
only says what varies between trials.

A sweep whose trials use several vocabularies declares them all in ``VOCAB_SIZES`` (a tuple of
ints): the study builds each one's tokenizer and token cache before the first trial and refuses
a suggestion of another. A sweep without it that suggests ``vocab_size`` from a categorical
needs none (the choices are read from its suggestion); one that suggests it otherwise does.

``--sweep`` takes the name of a module here (``default``, ``ladder``, ``ladder_large``,
``ladder_dense``, ``ladder_gpu``, ``regularise``, ``archs``, ``positions``, ``modern``, and the
recipe studies ``recipe_cpu``, ``recipe_ladder_cpu``, ``recipe_h200``, ``recipe_h200_final``;
``ladders`` is the ladder factory, not a sweep) or the path of a ``.py`` file that
defines ``suggest`` the same way.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from study.config import FixedTerms, TrainConfig
from study.errors import UsageError


@dataclass(frozen=True)
class Sweep:
    """A loaded search space. ``spec`` is what ``load_sweep`` was given (reloadable in a worker)."""

    name: str
    spec: str
    suggest: Callable[[Any], Any]
    sampler: Callable[..., Any] | None
    vocab_sizes: tuple[int, ...] | None = None  # the module's VOCAB_SIZES, if it declares them

    def build(self, trial: Any, fixed: FixedTerms) -> TrainConfig:
        """``suggest(trial)`` with the study-wide ``fixed`` terms applied on top, validated.

        Raises:
            UsageError: ``suggest`` raised, returned something other than a TrainConfig, or a
                config that does not validate.
        """
        try:
            config = self.suggest(trial)
        except UsageError as exc:
            raise UsageError(f"sweep {self.name}: {exc}") from None
        except (Exception, SystemExit) as exc:  # the user's code: one line, not our traceback
            raise UsageError(f"sweep {self.name}: suggest failed: {_what(exc)}") from None
        if not isinstance(config, TrainConfig):
            raise UsageError(
                f"sweep {self.name}: suggest must return a TrainConfig, got {type(config).__name__}"
            )
        config = fixed.apply(config)
        try:
            config.validate()
        except UsageError as exc:
            raise UsageError(f"sweep {self.name}: {exc}") from None
        vocab, prepared = config.model.vocab_size, fixed.vocab_sizes
        if prepared is not None and vocab not in prepared:
            raise UsageError(
                f"sweep {self.name}: suggested vocab_size {vocab}, not one of the vocabularies "
                f"prepared before the first trial ({', '.join(map(str, prepared))}); declare "
                f"every vocabulary suggest can return in VOCAB_SIZES"
            )
        return config


# Modules here that help write sweeps but are not search spaces themselves.
HELPERS = frozenset({"ladders"})


def available() -> list[str]:
    """Names of the sweeps shipped in this package."""
    return sorted(
        m.name
        for m in pkgutil.iter_modules(__path__)
        if not m.name.startswith("_") and m.name not in HELPERS
    )


def load_sweep(spec: str) -> Sweep:
    """Load a sweep by package name or ``.py`` path.

    Raises:
        UsageError: unknown name, missing or unreadable file, or no callable ``suggest``.
    """
    if spec.endswith(".py") or any(sep and sep in spec for sep in (os.sep, os.altsep)):
        path = Path(spec).expanduser().resolve()
        module = _load_file(path)
        name = path.stem
        spec = str(path)
    else:
        if spec not in available():
            raise UsageError(
                f"unknown sweep {spec!r}; choose one of {', '.join(available())} "
                f"or give the path of a .py file that defines suggest(trial)"
            )
        module = importlib.import_module(f"{__name__}.{spec}")
        name = spec
    suggest = getattr(module, "suggest", None)
    if not callable(suggest):
        raise UsageError(f"sweep {spec} does not define a function suggest(trial) -> TrainConfig")
    sampler = getattr(module, "sampler", None)
    if sampler is not None and not callable(sampler):
        raise UsageError(f"sweep {spec}: 'sampler' must be a function sampler(*, seed) -> sampler")
    vocabs = getattr(module, "VOCAB_SIZES", None)
    if vocabs is not None:
        if not (
            isinstance(vocabs, tuple | list)
            and vocabs
            and all(isinstance(v, int) and not isinstance(v, bool) for v in vocabs)
        ):
            raise UsageError(f"sweep {spec}: VOCAB_SIZES must be a non-empty tuple of integers")
        vocabs = tuple(vocabs)
    return Sweep(name=name, spec=spec, suggest=suggest, sampler=sampler, vocab_sizes=vocabs)


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"sweep file not found: {path}")
    module_name = f"_study_sweep_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load sweep file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up here
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's file: one line, not our traceback
        sys.modules.pop(module_name, None)
        raise UsageError(f"sweep file {path} failed to load: {_what(exc)}") from None
    return module


def _what(exc: BaseException) -> str:
    """One line for what the user's code raised; ``sys.exit(n)`` in a sweep is no way to end
    the study (its status would pass for the harness's own), so it is named as such."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def balanced_sampler(param: str, *, seed: int) -> Any:
    """A sampler that gives categorical ``param`` its least-tried choice (trials in any state but
    waiting count; first in order on ties) and samples every other parameter with a seeded
    RandomSampler. Any number of trials then covers the choices evenly."""
    import optuna
    from optuna.trial import TrialState

    tried = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.PRUNED)

    class BalancedSampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._fallback = optuna.samplers.RandomSampler(seed=seed)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return {}

        def sample_relative(self, study: Any, trial: Any, search_space: Any) -> dict[str, Any]:
            return {}

        def sample_independent(
            self, study: Any, trial: Any, param_name: str, param_distribution: Any
        ) -> Any:
            if param_name != param:
                return self._fallback.sample_independent(
                    study, trial, param_name, param_distribution
                )
            counts = dict.fromkeys(param_distribution.choices, 0)
            for t in study.get_trials(deepcopy=False, states=tried):
                if t.params.get(param) in counts:
                    counts[t.params[param]] += 1
            return min(counts, key=lambda choice: counts[choice])

    return BalancedSampler()
