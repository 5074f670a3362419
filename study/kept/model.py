"""Using a study's kept models: find a trial's checkpoint, re-score it, generate from it.

``python -m study.generate`` and ``python -m study.evaluate`` call these. The storage is only
read (an SQLite file through a read-only connection); the checkpoint's path is the trial's
``checkpoint`` user attribute (``study.orchestra.keep``), or, where that path no longer holds
it, the file of that name in the study's checkpoint folder beside the SQLite file (a database
merged in from another machine, or cloned with the repository, with its checkpoints).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from study.errors import UsageError, first_line
from study.kept.checkpoint import META, WEIGHTS, Checkpoint, checkpoint_root, load

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from study.data import TokenData

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///runs/study.db"  # study.run's default
ATTR = "checkpoint"


@dataclass(frozen=True)
class Kept:
    """A trial's kept checkpoint: its stem, trial number and recorded value."""

    stem: Path
    number: int
    value: float | None


def find(storage: str, study_name: str, *, trial: int | None = None) -> Kept:
    """Trial ``trial``'s checkpoint, or (None) the best complete trial's that is still kept.

    Raises:
        UsageError: no such study or trial, or its weights are not (or no longer) kept.
    """
    from optuna.trial import TrialState

    trials = read_trials(storage, study_name)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if trial is not None:
        found = [t for t in trials if t.number == trial]
        if not found:
            raise UsageError(f"study {study_name!r} has no trial {trial}")
        t = found[0]
        path = t.user_attrs.get(ATTR)
        if t.state != TrialState.COMPLETE or not path:
            raise UsageError(
                f"trial {trial} of {study_name!r} kept no weights ({t.state.name.lower()}; "
                f"only complete trials run with --keep other than none do)"
            )
        stem = located(str(path), storage, study_name)
        if stem is None:
            raise UsageError(
                f"trial {trial}'s checkpoint {Path(path).with_suffix(WEIGHTS)} is no longer "
                f"kept (the --keep policy removed it, or it was written on another machine)"
            )
        return Kept(stem=stem, number=t.number, value=t.value)
    ranked = sorted(
        complete, key=lambda t: (t.value if t.value is not None else math.inf, t.number)
    )
    for t in ranked:
        path = t.user_attrs.get(ATTR)
        stem = located(str(path), storage, study_name) if path else None
        if stem is not None:
            return Kept(stem=stem, number=t.number, value=t.value)
    raise UsageError(
        f"study {study_name!r} has no kept model ({len(complete)} complete trial(s)); run it "
        f"with --keep best, top-K or all"
    )


def located(path: str, storage: str, study_name: str) -> Path | None:
    """The stem of a recorded checkpoint ``path`` where it is now: there, or, for a study
    database moved (or merged in from another machine) with its checkpoints, under the same
    name in the study's folder beside the SQLite file (``checkpoint_root``); None if neither
    holds a complete checkpoint."""
    stem = Path(path).with_suffix("")
    root = checkpoint_root(storage, study_name)
    for candidate in (stem, root / stem.name if root is not None else None):
        if candidate is not None and candidate.with_suffix(META).is_file():
            return candidate
    return None


def read_trials(storage: str, study_name: str) -> list[FrozenTrial]:
    """Every trial of ``study_name``, read without writing (an SQLite file read-only).

    Raises:
        UsageError: the storage cannot be opened or read, or holds no such study.
    """
    import optuna
    import sqlalchemy as sa

    from study.storage.store import read_only_engine_kwargs, safe_url

    shown = safe_url(storage)
    try:
        url = sa.engine.make_url(storage)
    except sa.exc.ArgumentError:
        raise UsageError(f"not a storage URL: {storage!r} (e.g. {DEFAULT_STORAGE})") from None
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        raise UsageError(f"no study database at {url.database}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        rdb = optuna.storages.RDBStorage(
            storage, engine_kwargs=read_only_engine_kwargs(storage), skip_table_creation=True
        )
    except (RuntimeError, ImportError, sa.exc.SQLAlchemyError) as exc:
        raise UsageError(f"cannot open {shown}: {first_line(exc)}") from None
    try:
        study = optuna.load_study(study_name=study_name, storage=rdb)
        return list(study.get_trials(deepcopy=False))
    except KeyError:
        raise UsageError(f"no study {study_name!r} in {shown}") from None
    except sa.exc.SQLAlchemyError as exc:
        raise UsageError(f"cannot read {shown}: {first_line(exc)}") from None
    finally:
        rdb.engine.dispose()


def score(
    checkpoint: Checkpoint, valid: object, *, data: TokenData, eval_tokens: int | None = None
) -> tuple[float, float, int]:
    """Held-out loss (nats per token), bits per byte and targets scored of ``checkpoint`` on
    the id array ``valid``, in the windows and batches the trainer uses: the trial's own
    protocol (its ``eval_bytes`` of whole stories, or its ``eval_tokens``), or ``eval_tokens``
    tokens when given."""
    import numpy as np
    import torch

    from study.device import autocast, autocast_dtype, eager_attention
    from study.training.evaluate import evaluate, heldout_set

    config = checkpoint.config
    device = next(iter(checkpoint.model.parameters())).device
    held = heldout_set(
        np.asarray(valid),
        seq_len=config.model.seq_len,
        eval_tokens=eval_tokens or config.eval_tokens,
        eval_bytes=config.eval_bytes if eval_tokens is None else None,
        token_bytes=data.token_bytes,
        eot_id=data.eot_id,
    )
    windows = torch.from_numpy(held.windows).to(device)
    tail = None if held.tail is None else torch.from_numpy(held.tail).to(device)
    token_bytes = torch.from_numpy(data.token_bytes.astype(np.int64)).to(device)
    with eager_attention(device):
        loss, bpb = evaluate(
            checkpoint.model,
            windows,
            token_bytes=token_bytes,
            batch_size=8 if device.type == "cpu" else 64,
            amp=autocast(device, autocast_dtype(config.precision, device)),
            tail=tail,
        )
    tail_targets = 0 if tail is None else tail.size(1) - 1
    return loss, bpb, windows.size(0) * (windows.size(1) - 1) + tail_targets


def tokens_of_text(path: Path, *, data: TokenData) -> object:
    """The ids of a corpus file (any format ``study.data`` reads) in the checkpoint's
    tokenizer, each story followed by end-of-text, as the held-out split is cached.

    Raises:
        UsageError: the file is missing, unreadable, or holds no text.
    """
    import numpy as np

    from study.data.bpe import encode_batch
    from study.data.readers import file_stories

    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    stories = list(file_stories(path))
    if not stories:
        raise UsageError(f"{path} holds no text")
    return encode_batch(data.tokenizer, stories, eot_id=data.eot_id, dtype=np.dtype(np.int64))


def generate(
    checkpoint: Checkpoint,
    *,
    data: TokenData,
    prompt: str,
    tokens: int,
    temperature: float,
    top_k: int,
    seed: int,
) -> str:
    """The prompt and ``tokens`` new tokens sampled from the kept model, seeded."""
    from study.data.bpe import decode, encode
    from study.device import eager_attention

    device = next(iter(checkpoint.model.parameters())).device
    with eager_attention(device):
        new = checkpoint.model.generate(
            encode(data.tokenizer, prompt),
            n_tokens=tokens,
            seed=seed,
            temperature=temperature,
            top_k=top_k,
        )
    return prompt + decode(data.tokenizer, new)


__all__ = ["Checkpoint", "Kept", "find", "generate", "load", "score", "tokens_of_text"]
