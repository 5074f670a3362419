"""``python -m study.merge SRC DST``: copy studies, with their harness rows, between storages.

A study run on a remote machine (a rented GPU, a cluster node without access to the shared
database) lands in its own SQLite file; this brings it into the main database so the analysis sees
every device side by side. Optuna's trials are copied with ``optuna.copy_study``; the harness rows
(curves, samples) follow, re-keyed to the destination's trial ids by trial number. A study name
that already exists in the destination is refused, so nothing is merged twice. Both storages
are checked before anything is written: the source is only ever read (a missing file is not
created), and a source or destination that is not a study database (another application's
tables, a table named like Optuna's that is not) is refused with one line.

    python -m study.merge sqlite:///gpu.db sqlite:///study.db --study-name ladder-h100-300s
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from study.cli import ArgumentParser
from study.errors import UsageError, cli_main, first_line
from study.storage import schema, store
from study.storage.checks import check_tables_are_ours

if TYPE_CHECKING:
    from optuna.storages import RDBStorage


def merge(src: str, dst: str, *, study_names: list[str] | None = None) -> list[tuple[str, int]]:
    """Copy ``study_names`` (default: every study in ``src``) from ``src`` to ``dst``.

    Returns:
        (study name, trials copied) for each study.

    Raises:
        UsageError: a storage cannot be opened, a study is missing from ``src`` or already in
            ``dst``.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    source, has_rows = open_source(src)
    names = study_names or [s.study_name for s in optuna.get_all_study_summaries(source)]
    if not names:
        raise UsageError(f"no studies in {store.safe_url(src)}")
    present = {s.study_name for s in optuna.get_all_study_summaries(source)}
    for name in names:
        if name not in present:
            raise UsageError(f"no study {name!r} in {store.safe_url(src)}")
    store.inspect_storage(dst, names[0])  # refuses a foreign or unwritable one, writing nothing
    target = store.open_storage(dst)
    existing = {s.study_name for s in optuna.get_all_study_summaries(target)}
    clash = sorted(set(names) & existing)
    if clash:
        raise UsageError(f"study {clash[0]!r} already exists in {store.safe_url(dst)}")

    merged = []
    for name in names:
        optuna.copy_study(from_study_name=name, from_storage=source, to_storage=target)
        try:
            copied = _copy_rows(source.engine, target, name, has_rows=has_rows)
        except BaseException:
            optuna.delete_study(study_name=name, storage=target)  # all or nothing
            raise
        merged.append((name, copied))
    return merged


def open_source(src: str) -> tuple[RDBStorage, bool]:
    """Open ``src`` for reading only, after checking that it is a study database.

    Returns:
        Its Optuna storage, and whether it holds the harness tables (a study written by
        Optuna alone has none).

    Raises:
        UsageError: the URL is malformed, the SQLite file is missing, or the database is not
            Optuna's (or its harness schema is not this version's).
    """
    import optuna

    shown = store.safe_url(src)
    parsed = store.parse_url(src)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and not Path(parsed.database or "").is_file():
        raise UsageError(f"no study database at {shown}: no such file")
    kwargs = store.read_only_engine_kwargs(src)
    try:
        engine = sa.create_engine(src, **kwargs)
        try:
            with engine.connect() as conn:
                tables = set(sa.inspect(conn).get_table_names())
                check_tables_are_ours(tables, shown, sqlite=sqlite)
                store.check_harness_version(conn, tables, shown, allow_older=False)
        finally:
            engine.dispose()
        if "version_info" not in tables:
            raise UsageError(f"no studies in {shown}")
        storage = optuna.storages.RDBStorage(src, engine_kwargs=kwargs, skip_table_creation=True)
    except (sa.exc.SQLAlchemyError, ImportError, RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot open storage {shown}: {first_line(exc)}") from None
    return storage, schema.curve.name in tables and schema.sample.name in tables


def _copy_rows(src: sa.Engine, target: RDBStorage, name: str, *, has_rows: bool) -> int:
    """Copy study ``name``'s harness rows (where the source has them) into ``target``, keyed by
    the trial ids the copied trials got there. Returns the number of trials in the copied
    study."""
    study_id = target.get_study_id_from_name(name)
    numbers = [t.number for t in target.get_all_trials(study_id, deepcopy=False)]
    new_ids = {n: target.get_trial_id_from_study_id_trial_number(study_id, n) for n in numbers}
    if not has_rows:
        return len(new_ids)
    with src.connect() as conn:
        curve, sample = (_rows(conn, table, name) for table in (schema.curve, schema.sample))
    for row in (*curve, *sample):
        row["trial_id"] = new_ids[int(row["trial_number"])]
    with target.engine.begin() as conn:
        if curve:
            conn.execute(schema.curve.insert(), curve)
        if sample:
            conn.execute(schema.sample.insert(), sample)
    return len(new_ids)


def _rows(conn: sa.Connection, table: sa.Table, name: str) -> list[dict[str, Any]]:
    """Study ``name``'s rows of ``table``: the columns the source has (an older harness schema,
    which the source is never upgraded to read, lacks the newer nullable ones)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    columns = [c for c in table.columns if c.name in present]
    query = sa.select(*columns).where(table.c.study_name == name)
    return [dict(r._mapping) for r in conn.execute(query)]


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m study.merge", description=__doc__.splitlines()[0])
    p.add_argument("src", help="storage URL to copy from")
    p.add_argument("dst", help="storage URL to copy into")
    p.add_argument(
        "--study-name", action="append", help="a study to copy (repeatable; default: all)"
    )
    args = p.parse_args(argv)
    for name, n in merge(args.src, args.dst, study_names=args.study_name):
        print(f"merged study {name!r}: {n} trials")
    return 0


if __name__ == "__main__":
    sys.exit(main())
