"""``python -m study.merge SRC DST``: copy studies, with their harness rows, between storages.

A study run on a remote machine (a rented GPU, a cluster node without access to the shared
database) lands in its own SQLite file; this brings it into the main database so the analysis sees
every device side by side. Optuna's trials are copied with ``optuna.copy_study``; the harness rows
(curves, samples) follow, re-keyed to the destination's trial ids by trial number. A study name
that already exists in the destination is refused, so nothing is merged twice.

    python -m study.merge sqlite:///gpu.db sqlite:///study.db --study-name ladder-h100-300s
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import sqlalchemy as sa

from study.cli import ArgumentParser
from study.errors import UsageError, cli_main
from study.storage import schema, store

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
    source = store.open_storage(src)
    names = study_names or [s.study_name for s in optuna.get_all_study_summaries(source)]
    if not names:
        raise UsageError(f"no studies in {store.safe_url(src)}")
    present = {s.study_name for s in optuna.get_all_study_summaries(source)}
    for name in names:
        if name not in present:
            raise UsageError(f"no study {name!r} in {store.safe_url(src)}")
    target = store.open_storage(dst)
    existing = {s.study_name for s in optuna.get_all_study_summaries(target)}
    clash = sorted(set(names) & existing)
    if clash:
        raise UsageError(f"study {clash[0]!r} already exists in {store.safe_url(dst)}")

    merged = []
    for name in names:
        optuna.copy_study(from_study_name=name, from_storage=source, to_storage=target)
        try:
            copied = _copy_rows(source.engine, target, name)
        except BaseException:
            optuna.delete_study(study_name=name, storage=target)  # all or nothing
            raise
        merged.append((name, copied))
    return merged


def _copy_rows(src: sa.Engine, target: RDBStorage, name: str) -> int:
    """Copy study ``name``'s harness rows into ``target``, keyed by the trial ids the copied
    trials got there. Returns the number of trials in the copied study."""
    study_id = target.get_study_id_from_name(name)
    numbers = [t.number for t in target.get_all_trials(study_id, deepcopy=False)]
    new_ids = {n: target.get_trial_id_from_study_id_trial_number(study_id, n) for n in numbers}
    with src.connect() as conn:
        curve = [
            dict(r._mapping)
            for r in conn.execute(sa.select(schema.curve).where(schema.curve.c.study_name == name))
        ]
        sample = [
            dict(r._mapping)
            for r in conn.execute(
                sa.select(schema.sample).where(schema.sample.c.study_name == name)
            )
        ]
    for row in (*curve, *sample):
        row["trial_id"] = new_ids[row["trial_number"]]
    with target.engine.begin() as conn:
        if curve:
            conn.execute(schema.curve.insert(), curve)
        if sample:
            conn.execute(schema.sample.insert(), sample)
    return len(new_ids)


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
