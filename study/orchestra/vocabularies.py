"""The vocabularies a study's trials may use, and their tokens built once, before the first trial.

A sweep may search the vocabulary. Each vocabulary has its own tokenizer and token cache, and
building one takes seconds to minutes: inside a trial it would happen in the child, before its
clock but racing the other workers' trials for the same build lock. So the runner reads every
vocabulary the sweep can return (``study_vocabularies``) and builds them all in the parent
(``prepare_vocabularies``), before any worker starts; a trial then maps the cache the parent
built, and a suggestion of a vocabulary that was not prepared is refused
(``sweeps.Sweep.build``).

Per-token losses do not compare across vocabularies, and neither would bits per byte if each
trial scored ``eval_tokens`` tokens of its own vocabulary: a 1024-token vocabulary's 65,536
tokens hold fewer bytes of text than a 4096-token one's. So a study of several vocabularies
scores every trial on the same held-out text, ``eval_bytes`` of whole stories
(``study_eval_bytes``); a study of one keeps the token protocol it always had.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.errors import UsageError
from study.orchestra import progress

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

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


# The held-out text of a study of several vocabularies, unless its sweep sets eval_bytes: 256 KiB,
# about what the default 65,536 held-out targets hold at vocabulary 4096 (260,625 bytes of the
# bundled sample's held-out split). There it is the first 349 of the split's 814 stories,
# 262,565 bytes: 66,038 targets at vocabulary 4096, 71,613 at 2048, 82,503 at 1024.
DEFAULT_EVAL_BYTES = 262_144


def study_eval_bytes(probe: TrainConfig, vocabs: tuple[int, ...]) -> int | None:
    """The held-out bytes every trial of the study is scored on: the sweep's own
    ``eval_bytes`` if its suggestion sets one, else ``DEFAULT_EVAL_BYTES`` for a study of
    several vocabularies, else None (``eval_tokens`` tokens, as a study of one always was)."""
    if probe.eval_bytes is not None:
        return probe.eval_bytes
    return DEFAULT_EVAL_BYTES if len(vocabs) > 1 else None


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


def vocab_lines(complete: Sequence[FrozenTrial]) -> list[str]:
    """A note when the trials span several vocabularies: their per-token perplexity does not
    compare across them; bits per byte (such a study's objective, the order above) do."""
    vocabs = {
        v
        for t in complete
        if isinstance(config := t.user_attrs.get("config"), dict)
        and isinstance(v := (config.get("model") or {}).get("vocab_size"), int)
    }
    if len(vocabs) < 2:
        return []
    shown = ", ".join(map(str, sorted(vocabs)))
    return [
        f"note: these trials use {len(vocabs)} vocabularies ({shown}): per-token perplexity "
        f"(ppl) does not compare across vocabularies; compare them in bits per byte (bpb)"
    ]
