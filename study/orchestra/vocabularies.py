"""The vocabularies a study's trials may use, and their tokens built once, before the first trial.

A sweep may search the vocabulary. Each vocabulary has its own tokenizer and token cache, and
building one takes seconds to minutes: inside a trial it would happen in the child, before its
clock but racing the other workers' trials for the same build lock. So the runner reads every
vocabulary the sweep can return (``study_vocabularies``) and builds them all in the parent
(``prepare_vocabularies``), before any worker starts; a trial then maps the cache the parent
built, and a suggestion of a vocabulary that was not prepared is refused
(``sweeps.Sweep.build``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import UsageError
from study.orchestra import progress

if TYPE_CHECKING:
    from study.config import TrainConfig
    from sweeps import Sweep


def study_vocabularies(
    sweep: Sweep, distributions: dict[str, Any], probe: TrainConfig
) -> tuple[int, ...]:
    """Every vocabulary the sweep's trials may use, the probe's first: the sweep's
    ``VOCAB_SIZES`` if it declares them, else the choices of a categorical ``vocab_size`` among
    the probe trial's ``distributions``, else the probe's own vocabulary alone.

    Raises:
        UsageError: a declared vocabulary a model cannot have, a declaration that leaves out
            the probe's own, or ``vocab_size`` suggested from a range without a declaration.
    """
    from optuna.distributions import CategoricalDistribution

    own = probe.model.vocab_size
    declared = sweep.vocab_sizes
    if declared is None:
        suggested = distributions.get("vocab_size")
        if suggested is None:
            return (own,)
        if not isinstance(suggested, CategoricalDistribution):
            raise UsageError(
                f"sweep {sweep.name} suggests vocab_size from a range; declare every vocabulary "
                f"suggest can return in VOCAB_SIZES, so each is prepared before the first trial"
            )
        choices = suggested.choices
        declared = tuple(v for v in choices if isinstance(v, int) and not isinstance(v, bool))
        if len(declared) < len(choices):
            raise UsageError(f"sweep {sweep.name}: its vocab_size choices must be integers")
    if own not in declared:
        raise UsageError(
            f"sweep {sweep.name}: its suggestion has vocab_size {own}, not one of the "
            f"vocabularies it declares ({', '.join(map(str, declared))})"
        )
    for vocab in declared:
        try:
            dataclasses.replace(probe.model, vocab_size=vocab).validate()
        except UsageError as exc:
            raise UsageError(f"sweep {sweep.name}: VOCAB_SIZES: {exc}") from None
    return (own, *sorted(set(declared) - {own}))


def prepare_vocabularies(
    config: TrainConfig, vocabs: tuple[int, ...], *, cache_dir: str | None, max_stories: int | None
) -> None:
    """Build (or find built) the tokenizer and token cache of each of ``vocabs`` other than
    ``config``'s own (``runner.study_tokens`` builds that one), for the study's corpus and
    story limit ``max_stories``, so no trial builds one.

    Raises:
        UsageError: bad data, a cache folder that cannot be written.
    """
    from study.data import load_tokens

    folder = Path(cache_dir) if cache_dir is not None else None
    for vocab in vocabs:
        if vocab == config.model.vocab_size:
            continue
        progress.emit(
            f"preparing tokens ({config.data or 'TinyStories'}, vocab {vocab}, "
            f"{max_stories} training stories)"
        )
        load_tokens(config.data, vocab_size=vocab, cache_dir=folder, max_stories=max_stories)
