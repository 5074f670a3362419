"""Study database (any storage URL Optuna accepts) or CSV file -> pandas DataFrames.

Reading never writes: an SQLite file is opened read-only, a missing file or one that holds no
Optuna study is refused before Optuna (which would create its tables) ever sees it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.clean import clean_frame, printable
from study.errors import UsageError, first_line
from study.objective import PPL, of_study
from study.orchestra.machine_load import LOAD_ATTRS
from study.result import TRIAL_ATTRS
from study.storage.store import (
    check_harness_version,
    parse_url,
    read_only_engine_kwargs,
    safe_url,
)

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import sqlalchemy as sa

log = logging.getLogger(__name__)

# What python -m study.run writes by default; the shipped studies are in the tracked top-level
# study.db, read with --storage sqlite:///study.db.
DEFAULT_STORAGE = "sqlite:///runs/study.db"
# Where the study runner may leave a failed trial's reason (user attrs first, then system attrs).
FAIL_REASON_KEYS = ("fail_reason", "failure_reason", "reason", "error")
CURVE_COLUMNS = (
    "trial_id",
    "idx",
    "study_name",
    "trial_number",
    "elapsed_s",
    "tokens",
    "train_loss",
    "val_loss",
)
SAMPLE_COLUMNS = ("trial_id", "study_name", "trial_number", "prompt", "text")
_SQLITE_MAGIC = b"SQLite format 3\x00"
_NESTED_ATTRS = ("config", "versions")  # dicts, flattened into "config.model.n_layer" etc.


@dataclass(frozen=True, eq=False)
class StudyData:
    """One study as frames.

    ``trials``: one row per trial: ``number``, ``trial_id``, ``state`` (COMPLETE, FAIL, ...),
    ``value`` (the study's ``objective``: held-out perplexity, or bits per byte in a study of
    several vocabularies, ``study.objective``), ``objective`` (that name, ``ppl`` or ``bpb``, on
    every row, so a CSV of the table keeps it), ``datetime_start``, ``duration_s``, every name in
    ``study.result.TRIAL_ATTRS`` (nested dicts flattened to ``config.model.n_layer`` and the like;
    missing ones are NaN), ``fail_reason`` and ``param.<name>`` for Optuna's sampled params.
    ``curves``: one row per ``harness_curve`` point, ``samples`` one per ``harness_sample`` row.
    """

    storage: str
    study_name: str
    direction: str
    trials: pd.DataFrame
    curves: pd.DataFrame
    samples: pd.DataFrame
    objective: str = PPL  # what ``value`` measures (study.objective)

    def complete(self) -> pd.DataFrame:
        """The complete trials, by trial number."""
        return self.trials[self.trials["state"] == "COMPLETE"].sort_values("number")


def load_study(storage: str = DEFAULT_STORAGE, study_name: str | None = None) -> StudyData:
    """Read one study and its harness tables.

    Without ``study_name`` the storage's only study is read, or where it holds several, the
    most recently run one (the latest trial start or finish; a study without trials counts as
    older than any with), and a warning names it.

    Raises:
        UsageError: the storage cannot be opened, is not a database, holds no study, or holds
            several and none was named, or the named one is missing.
    """
    import optuna
    import sqlalchemy as sa

    shown = safe_url(storage)
    engine_kwargs = _reading_options(storage)
    # Checked before Optuna sees the storage, since Optuna would create its tables.
    tables = _study_tables(storage, engine_kwargs, shown)
    try:
        rdb = optuna.storages.RDBStorage(
            storage, engine_kwargs=engine_kwargs, skip_table_creation=True
        )
    except (RuntimeError, ImportError, sa.exc.SQLAlchemyError) as exc:
        raise UsageError(f"cannot open {shown}: {first_line(exc)}") from None
    try:
        names = sorted(s.study_name for s in rdb.get_all_studies())
        study_name = _pick_study(names, study_name, shown, engine=rdb.engine)
        study = optuna.load_study(study_name=study_name, storage=rdb)
        trials = study.get_trials(deepcopy=False)
        # Optuna's storage API, not the private FrozenTrial._trial_id: one lookup per trial.
        study_id = rdb.get_study_id_from_name(study_name)
        trial_ids = {
            t.number: rdb.get_trial_id_from_study_id_trial_number(study_id, t.number)
            for t in trials
        }
        direction = study.direction.name if len(study.directions) == 1 else "MULTI"
        objective = of_study(study.user_attrs)
        curves = _read_table(rdb.engine, "harness_curve", CURVE_COLUMNS, study_name, tables)
        samples = _read_table(rdb.engine, "harness_sample", SAMPLE_COLUMNS, study_name, tables)
    except (sa.exc.SQLAlchemyError, optuna.exceptions.OptunaError, ValueError) as exc:
        # A damaged or hand-edited database (corrupt pages, malformed JSON in an attribute)
        # fails inside Optuna's reading; it is the input that is wrong.
        raise UsageError(f"cannot read {shown}: {first_line(exc)}") from None
    finally:
        rdb.engine.dispose()
    log.info("loaded %d trials of study %r from %s", len(trials), study_name, shown)
    return StudyData(  # strings from the database shown clean from here on (analysis.clean)
        storage=shown,
        study_name=printable(study_name),
        direction=direction,
        trials=clean_frame(trials_frame(trials, trial_ids=trial_ids, objective=objective)),
        curves=clean_frame(curves),
        samples=clean_frame(samples),
        objective=objective,
    )


def trials_table(storage: str = DEFAULT_STORAGE, study_name: str | None = None) -> pd.DataFrame:
    """One row per trial of a study, every state: its config, metrics, state and fail reason.

    The pandas user's one line: ``analysis.load.trials_table("sqlite:///study.db")`` (the study
    chosen as :func:`load_study` chooses it). Columns as :class:`StudyData` ``trials``; the same
    table ``python -m analysis.trials --csv PATH`` writes.

    Raises:
        UsageError: as :func:`load_study`.
    """
    return load_study(storage, study_name).trials


def trials_frame(
    trials: Iterable[optuna.trial.FrozenTrial],
    *,
    trial_ids: Mapping[int, int],
    objective: str = PPL,
) -> pd.DataFrame:
    """One row per trial; columns as described in :class:`StudyData`. ``trial_ids`` maps each
    trial number to the storage's trial id (the key of the harness rows); ``objective`` is
    the study's (``study.objective.of_study``)."""
    import pandas as pd

    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number,
            "trial_id": trial_ids[t.number],
            "state": t.state.name,
            "value": t.value if t.values is not None and len(t.values) == 1 else math.nan,
            "objective": objective,
            "datetime_start": t.datetime_start,
            "duration_s": t.duration.total_seconds() if t.duration is not None else math.nan,
        }
        attrs = t.user_attrs
        for name in TRIAL_ATTRS:
            value = attrs.get(name)
            if isinstance(value, Mapping):
                row.update(_flatten(value, prefix=name + "."))
            elif name not in _NESTED_ATTRS:
                row[name] = value
        row.update({k: attrs[k] for k in LOAD_ATTRS if k in attrs})  # where recorded
        row["fail_reason"] = _fail_reason(t)
        for name, value in t.params.items():
            row[f"param.{name}"] = value
        rows.append(row)
    base = ["number", "trial_id", "state", "value", "objective", "datetime_start", "duration_s"]
    columns = base + [a for a in TRIAL_ATTRS if a not in _NESTED_ATTRS] + ["fail_reason"]
    frame = pd.DataFrame(rows)
    for col in columns:
        if col not in frame.columns:
            frame[col] = None
    extra = sorted(c for c in frame.columns if c not in columns)
    frame = frame[columns + extra]
    for col in (
        "value",
        "params",
        "params_nonembedding",
        "flops_per_token",
        "tokens_seen",
        "tokens_per_second",
        "train_seconds",
        "steps",
        "epochs",
        "val_loss",
        "val_ppl",
        "val_bpb",
        "budget",
        "lr",
        "n_layer",
        "d_model",
        "n_head",
        "batch_size",
    ):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame.sort_values("number").reset_index(drop=True)


def read_csv(path: str | os.PathLike[str], columns: Sequence[str]) -> pd.DataFrame:
    """Read ``columns`` (all required, positive finite numbers) from a CSV file.

    Raises:
        UsageError: the file is missing or unreadable, a column is missing, or a value is not a
            positive finite number.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"no CSV file at {p}")
    try:
        frame = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read CSV {p}: {first_line(exc)}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise UsageError(
            f"CSV {p} lacks column(s) {', '.join(missing)} (has: {', '.join(frame.columns)})"
        )
    out = frame[list(columns)].apply(pd.to_numeric, errors="coerce")
    if out.empty:
        raise UsageError(f"CSV {p} has no rows")
    for col in columns:
        bad = ~(out[col] > 0) | ~out[col].map(math.isfinite)
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise UsageError(
                f"CSV {p} column {col}, row {row + 2}: {frame[col].iloc[row]!r} is not a "
                f"positive number"
            )
    return out.astype(float)


# ---------------------------------------------------------------------------------------------


def _reading_options(storage: str) -> dict[str, Any]:
    """``study.storage.store``'s read-only engine options for ``storage``, once an SQLite file is known
    to exist and be a database: reading must never create a file, nor tables in a stranger's.

    Raises:
        UsageError: ``storage`` is not a URL, names no SQLite file, or one that is missing or is
            not an SQLite database.
    """
    url = parse_url(storage)
    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            raise UsageError(f"storage {safe_url(storage)!r} names no SQLite file")
        path = Path(database).resolve()
        if not path.is_file():
            raise UsageError(f"no study database at {path}")
        with open(path, "rb") as fh:
            if fh.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise UsageError(f"{path} is not an SQLite database")
    return read_only_engine_kwargs(storage)


def _study_tables(storage: str, engine_kwargs: dict[str, Any], shown: str) -> set[str]:
    """The table names of a storage that holds an Optuna study and harness tables this code
    reads (an older harness schema included: old studies stay readable).

    Raises:
        UsageError: the storage cannot be opened, holds no Optuna study, or was written by a
            newer harness.
    """
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(storage, **engine_kwargs)
    except (ImportError, sa.exc.ArgumentError) as exc:
        raise UsageError(f"cannot open {shown}: {first_line(exc)}") from None
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if "studies" not in tables or "version_info" not in tables:
                raise UsageError(f"{shown} holds no Optuna study")
            check_harness_version(conn, tables, shown, allow_older=True)
    except sa.exc.SQLAlchemyError as exc:
        raise UsageError(f"cannot open {shown}: {first_line(exc)}") from None
    finally:
        engine.dispose()
    return tables


def _pick_study(names: list[str], wanted: str | None, shown: str, *, engine: sa.Engine) -> str:
    if wanted is not None:
        if wanted not in names:
            listed = ", ".join(names) if names else "none"
            raise UsageError(f"no study named {wanted!r} in {shown} (studies: {listed})")
        return wanted
    if len(names) == 1:
        return names[0]
    if not names:
        raise UsageError(f"{shown} holds no study")
    newest = latest_study(engine)
    log.warning(
        "%s holds %d studies; reading %r, the most recently run (pick another with --study-name)",
        shown,
        len(names),
        newest,
    )
    return newest


def latest_study(engine: sa.Engine) -> str:
    """The name of the study with the newest activity in Optuna's tables: its latest trial
    start or completion; studies without trials rank below any with, later-created first."""
    import sqlalchemy as sa

    # Optuna's storage API has no per-study "last active" time; its schema (studies, trials)
    # is public and stable across the versions this reads, so one grouped query answers it.
    query = sa.text(
        "SELECT s.study_name, MAX(t.datetime_start), MAX(t.datetime_complete), s.study_id "
        "FROM studies s LEFT JOIN trials t ON t.study_id = s.study_id "
        "GROUP BY s.study_id, s.study_name"
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()

    def activity(row: Any) -> tuple[bool, str, int]:
        times = [str(v) for v in (row[1], row[2]) if v is not None]
        return (bool(times), max(times, default=""), int(row[3]))

    return str(max(rows, key=activity)[0])


def _read_table(
    engine: sa.Engine,
    name: str,
    columns: Sequence[str],
    study_name: str,
    tables: set[str],
) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy as sa

    from study.storage import schema

    if name not in tables:
        return pd.DataFrame({c: [] for c in columns})
    table = schema.metadata.tables[name]
    query = sa.select(*(table.c[c] for c in columns)).where(table.c.study_name == study_name)
    order = [table.c.trial_number] + ([table.c.idx] if "idx" in table.c else [])
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(*order)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def _flatten(value: Mapping[str, Any], *, prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, Mapping):
            out.update(_flatten(item, prefix=f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = item
    return out


def _fail_reason(trial: optuna.trial.FrozenTrial) -> str | None:
    for attrs in (trial.user_attrs, trial.system_attrs):
        for key in FAIL_REASON_KEYS:
            if attrs.get(key) is not None:
                return str(attrs[key])
    return None
