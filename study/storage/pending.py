"""Trial results that could not be written to the database, kept on disk until they can.

When the database's disk is full, or the database stays unreachable past the patience
(``study.storage.retry``), as a trained trial is recorded, the worker keeps the result in a
pending-results file (one JSON per trial, written atomically) and the run ends with one
line; the trial stays RUNNING. The next worker of the study on this machine (the same run's, or
a rerun's) records it before it recovers stale trials, so the trained result is not thrown away
and trained again. A pending trial that another machine has meanwhile written off is dropped:
its configuration was queued again there.

A file is keyed by the storage's full identity (``store.storage_identity``: the absolute path
of an SQLite file, or the dialect, host, port and database of a server) and the study's own
(``SharedStudy.identity``: Optuna's study id and the creation id stored with the study), and
its payload names both again: a study of the same name elsewhere (another folder under the same
relative URL, another server with a database of the same name) or one deleted and made again
never sees it, so never records it nor deletes it as "written off".

Files live under the token cache folder (``--cache-dir``, often another disk than the
database's) or, if that cannot be written, in a ``.pending`` folder beside an SQLite file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from study.fileio import write_json
from study.objective import of_study, stored_point_value
from study.result import TrainResult
from study.storage.store import storage_identity

if TYPE_CHECKING:
    from study.storage.optuna_store import SharedStudy

log = logging.getLogger(__name__)


def identity(shared: SharedStudy, url: str) -> dict[str, str]:
    """What names the study a result was kept for: its storage, name and own identity."""
    return {
        "storage": storage_identity(url),
        "study_name": shared.name,
        "study": shared.identity,
    }


def folders(ident: dict[str, str], url: str, *, cache_dir: str | None) -> list[Path]:
    """Where this study's pending results may lie on this machine, in the order tried."""
    from study.data import default_cache_dir

    parsed = sa.engine.make_url(url)
    # Pending files are read back on this machine only, so this machine's name of the server
    # is the one that must agree; the study's own identity tells namesakes apart.
    text = "\n".join(ident[k] for k in ("storage", "study_name", "study"))
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    out = [(Path(cache_dir) if cache_dir else default_cache_dir()) / "pending-results" / key]
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        db = Path(parsed.database).resolve()
        out.append(db.parent / f".{db.name}.pending" / key)
    return out


def keep(
    shared: SharedStudy,
    url: str,
    *,
    cache_dir: str | None,
    number: int,
    value: float,
    attrs: dict[str, Any],
    result: TrainResult,
) -> Path:
    """Write trial ``number``'s result where it can be kept; returns the file.

    Raises:
        OSError: no folder could take it (the last error).
    """
    ident = identity(shared, url)
    payload = {
        **ident,
        "number": number,
        "value": value,
        "attrs": attrs,
        "result": result.to_dict(),
    }
    error: OSError | None = None
    for folder in folders(ident, url, cache_dir=cache_dir):
        path = folder / f"trial-{number}.json"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            write_json(path, payload)
        except OSError as exc:
            error = exc
            continue
        return path
    assert error is not None
    raise error


def record(shared: SharedStudy, url: str, *, cache_dir: str | None) -> list[int]:
    """Under the study lock: record every pending result of ``shared`` kept on this machine
    whose trial is still RUNNING, and remove the files (also those whose trial another machine
    finished meanwhile). Returns the numbers of the trials completed.

    Raises:
        StorageFull: the disk is still full (the files stay for the next attempt).
    """
    import optuna
    from optuna.trial import TrialState

    from study.storage.optuna_store import TrialWrittenOff

    done = []
    ident = identity(shared, url)
    for folder in folders(ident, url, cache_dir=cache_dir):
        for path in sorted(folder.glob("trial-*.json")) if folder.is_dir() else []:
            try:
                kept = json.loads(path.read_text())
                number, result = int(kept["number"]), TrainResult(**kept["result"])
            except (OSError, ValueError, TypeError, KeyError) as exc:
                log.warning("ignoring unreadable pending result %s (%s)", path, exc)
                continue
            if any(kept.get(k) != v for k, v in ident.items()):
                continue  # another study's (a key collision or a copied folder): not ours
            try:
                running = shared.stored(number).state == TrialState.RUNNING
            except KeyError:  # no such trial: nothing to record it into
                running = False
            if running:
                trial = optuna.Trial(shared.study, shared.trial_id(number))
                try:
                    # The curve points the database did not take (point i at fraction i/P).
                    points = int(result.config.get("curve_points", len(result.curve)))
                    objective = of_study(shared.user_attrs())
                    for index, point in enumerate(result.curve, 1):
                        shared.report_point(
                            trial,
                            index,
                            stored_point_value(
                                point, eval_bytes=result.eval_bytes, objective=objective
                            ),
                            budget=float(result.config["budget"]),
                            curve_points=points,
                            ask_pruner=False,
                        )
                    shared.complete(trial, float(kept["value"]), attrs=kept["attrs"], result=result)
                    done.append(number)
                except TrialWrittenOff:
                    pass
            else:
                log.warning(
                    "trial %d was written off by another machine before its kept "
                    "result could be recorded; it was queued again there",
                    number,
                )
            path.unlink(missing_ok=True)
    return done
