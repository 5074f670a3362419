"""A study's trials as a CSV table for other tools (spreadsheets, R, pandas): what
``python -m analysis.trials`` writes. The table is ``analysis.load.trials_table``'s."""

from __future__ import annotations

import json

from analysis.clean import csv_safe
from analysis.load import DEFAULT_STORAGE, load_study
from study.fileio import atomic_write_text
from study.outputs import check_output

STDOUT = "-"


def run_trials(
    *, storage: str | None = None, study_name: str | None = None, csv: str, force: bool = False
) -> str:
    """Write every trial of the study as CSV to ``csv`` (``-``: return the CSV itself, for
    stdout); otherwise return one line saying what was written where.

    Raises:
        UsageError: an unwritable or non-.csv path, or a study that cannot be read (nothing is
            written then).
    """
    out = None if csv == STDOUT else check_output(csv, what="--csv", kind="csv", force=force)
    data = load_study(storage or DEFAULT_STORAGE, study_name)
    text = csv_safe(data.trials).to_csv(index=False)
    if out is None:
        return text.rstrip("\n")
    atomic_write_text(out, text)
    cols = len(data.trials.columns)
    return f"wrote {len(data.trials)} trials x {cols} columns of study {data.study_name!r} to {out}"


def trial_config(*, storage: str | None = None, study_name: str | None, number: int) -> str:
    """Trial ``number``'s full config as the JSON ``python -m study.train --config`` reads.

    Raises:
        UsageError: no study named, no such trial, or one without a stored config.
    """
    from study.config import TrainConfig
    from study.errors import UsageError
    from study.kept.model import read_trials

    if study_name is None:
        raise UsageError("--config needs --study-name")
    found = [t for t in read_trials(storage or DEFAULT_STORAGE, study_name) if t.number == number]
    if not found:
        raise UsageError(f"study {study_name!r} has no trial {number}")
    raw = found[0].user_attrs.get("config")
    if not isinstance(raw, dict):
        raise UsageError(f"trial {number} of {study_name!r} has no stored config")
    return json.dumps(TrainConfig.from_dict(raw).to_dict(), indent=2)
