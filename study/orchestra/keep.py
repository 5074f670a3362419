"""The study's side of checkpoints: where a trial's weights go and which ones stay.

The trainer child writes its final weights after its clock stopped; the worker copies them to
the study's checkpoint folder (``study.kept.checkpoint.checkpoint_root``), records the path as the
trial's ``checkpoint`` user attribute before the trial becomes COMPLETE, and then applies the
``--keep`` policy over the study's complete trials, best value first.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from study.kept.checkpoint import checkpoint_root, enforce_keep, keep_count, trial_stem

if TYPE_CHECKING:
    from study.storage.optuna_store import SharedStudy

log = logging.getLogger(__name__)

ATTR = "checkpoint"  # trial user attribute: the kept weights' path


def stem_for(
    storage: str, study_name: str, number: int, *, keep: str, checkpoint_dir: str | None
) -> Path | None:
    """Where trial ``number``'s checkpoint goes; None when none is kept (``--keep none``, or a
    server without ``--checkpoint-dir``)."""
    if keep_count(keep) == 0:
        return None
    root = checkpoint_root(storage, study_name, checkpoint_dir=checkpoint_dir)
    return None if root is None else trial_stem(root, number)


def enforce(shared: SharedStudy, storage: str, *, keep: str, checkpoint_dir: str | None) -> None:
    """Remove the checkpoints the policy no longer keeps (the worse complete trials')."""
    from optuna.trial import TrialState

    root = checkpoint_root(storage, shared.name, checkpoint_dir=checkpoint_dir)
    if root is None:
        return
    complete = [
        t for t in shared.trials() if t.state == TrialState.COMPLETE and t.value is not None
    ]
    ranked = [t.number for t in sorted(complete, key=lambda t: (t.value, t.number))]
    try:
        removed = enforce_keep(root, ranked, policy=keep)
    except OSError as exc:
        log.warning("could not apply --keep %s in %s: %s", keep, root, exc)
        return
    if removed:
        log.info("--keep %s: removed the checkpoints of trial(s) %s", keep, removed)
