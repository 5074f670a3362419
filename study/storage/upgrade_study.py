"""A one-time upgrade of a study written before the objective was named and intermediate
values were keyed by budget second (issue 15), run when a study run opens it.

Such a study has no ``study:metric_names`` system attribute (the name Optuna's dashboard shows
for the objective) and reported curve point ``i`` (1 .. ``curve_points``) under step ``i``;
a study of today reports it under ``curve_step(i)``, its elapsed budget in seconds, so a pruner
and the dashboard compare old and new trials at the same point of their budget. Both
changes came in one commit, so a study without the name is one whose steps are all indices.
(A study of the older kind that a harness between that commit and this one resumed has its
name, and so is left as it is: its older trials keep index steps.)

The upgrade names the objective, rewrites each trial's steps from its own budget and curve
points (its ``config`` attribute; the study's ``budget`` where a trial lacks one) and records
``UPGRADE_ATTR``, all in one transaction: a second open finds the attribute (or the name) and
writes nothing, and a crash leaves the study as it was. Only the study run calls this (under
the study lock); the analysis opens storages read-only and never does.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import sqlalchemy as sa

log = logging.getLogger(__name__)

UPGRADE_ATTR = "harness:upgraded"  # study system attribute: what was upgraded, and when
METRIC_NAMES_ATTR = "study:metric_names"  # where Optuna's ``Study.set_metric_names`` keeps them
DEFAULT_CURVE_POINTS = 10  # ``TrainConfig.curve_points`` when the older studies were run

# Optuna's tables, only the columns read or written here (their names are Optuna's schema).
_studies = sa.table("studies", sa.column("study_id"), sa.column("study_name"))
_study_system = sa.table(
    "study_system_attributes", sa.column("study_id"), sa.column("key"), sa.column("value_json")
)
_study_user = sa.table(
    "study_user_attributes", sa.column("study_id"), sa.column("key"), sa.column("value_json")
)
_trials = sa.table("trials", sa.column("trial_id"), sa.column("study_id"))
_trial_user = sa.table(
    "trial_user_attributes", sa.column("trial_id"), sa.column("key"), sa.column("value_json")
)
_values = sa.table(
    "trial_intermediate_values",
    sa.column("trial_intermediate_value_id"),
    sa.column("trial_id"),
    sa.column("step"),
    sa.column("intermediate_value"),
    sa.column("intermediate_value_type"),
)


def upgrade_study(engine: sa.Engine, study_name: str, *, metric_name: str) -> bool:
    """Upgrade study ``study_name`` in place if it is of the older kind (see the module
    docstring), in one transaction. True if it was upgraded; False if there was nothing to do
    (no such study yet, or one already named or upgraded)."""
    with engine.begin() as conn:
        study_id = conn.execute(
            sa.select(_studies.c.study_id).where(_studies.c.study_name == study_name)
        ).scalar()
        if study_id is None:
            return False
        system = set(
            conn.execute(
                sa.select(_study_system.c.key).where(_study_system.c.study_id == study_id)
            ).scalars()
        )
        if UPGRADE_ATTR in system or METRIC_NAMES_ATTR in system:
            return False
        moved = _rekey_steps(conn, study_id, study_name)
        conn.execute(
            _study_system.insert(),
            [
                {
                    "study_id": study_id,
                    "key": METRIC_NAMES_ATTR,
                    "value_json": json.dumps([metric_name]),
                },
                {
                    "study_id": study_id,
                    "key": UPGRADE_ATTR,
                    "value_json": json.dumps(
                        f"objective named, intermediate values keyed by budget second "
                        f"({moved} trials) at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
                    ),
                },
            ],
        )
    log.info(
        "upgraded older study %s: objective named, steps of %d trials rekeyed", study_name, moved
    )
    return True


def _rekey_steps(conn: sa.Connection, study_id: int, study_name: str) -> int:
    """Move every trial's intermediate values from curve index to budget-second steps; the
    number of trials whose steps changed. A trial whose steps are not curve indices, or whose
    budget is unknown, is left as it is (and said so in the log)."""
    from study.storage.schema import curve_step

    study_budget = _number(
        conn.execute(
            sa.select(_study_user.c.value_json).where(
                _study_user.c.study_id == study_id, _study_user.c.key == "budget"
            )
        ).scalar()
    )
    trial_ids = sa.select(_trials.c.trial_id).where(_trials.c.study_id == study_id)
    configs = {
        trial_id: _config(value)
        for trial_id, value in conn.execute(
            sa.select(_trial_user.c.trial_id, _trial_user.c.value_json).where(
                _trial_user.c.trial_id.in_(trial_ids), _trial_user.c.key == "config"
            )
        )
    }
    rows: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(sa.select(_values).where(_values.c.trial_id.in_(trial_ids))):
        rows.setdefault(row.trial_id, []).append(dict(row._mapping))
    moved = 0
    for trial_id, points in sorted(rows.items()):
        config = configs.get(trial_id, {})
        budget = _number(config.get("budget")) or study_budget
        curve_points = int(config.get("curve_points") or DEFAULT_CURVE_POINTS)
        if budget is None or any(not 1 <= p["step"] <= curve_points for p in points):
            log.warning("study %s: steps of trial id %d left as they are", study_name, trial_id)
            continue
        new = [
            {**p, "step": curve_step(p["step"], budget=budget, curve_points=curve_points)}
            for p in points
        ]
        if new == points:
            continue
        # Delete then insert: rewriting in place could collide with (trial_id, step) unique.
        conn.execute(_values.delete().where(_values.c.trial_id == trial_id))
        conn.execute(_values.insert(), new)
        moved += 1
    return moved


def _config(value_json: str | None) -> dict[str, Any]:
    try:
        value = json.loads(value_json or "null")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    """A positive budget from a JSON text or an already decoded value; None otherwise."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)
