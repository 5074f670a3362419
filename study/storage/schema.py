"""The harness's own tables, kept in the same database as Optuna's.

Optuna's tables hold each trial's objective (held-out perplexity) and its user attributes (the
scalar results and the full config, see ``study.result.TRIAL_ATTRS``). Series too long for attributes live
here, keyed by Optuna's ``trial_id`` (unique across studies in one storage) with the study name and
trial number repeated so a reader needs no join.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

SCHEMA_VERSION = 2
# Versions this code upgrades in place (``harness_tables.create_or_upgrade``): 1 lacked ``harness_curve.eval_tokens``.
MIGRATES_FROM = frozenset({1})

# MySQL's FLOAT is 4 bytes and its TEXT holds 64 KB; ask it for what the other backends give.
FLOAT = sa.Float().with_variant(mysql.DOUBLE(asdecimal=False), "mysql", "mariadb")
TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")

metadata = sa.MetaData()

meta = sa.Table(
    "harness_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(256), nullable=False),
)

curve = sa.Table(
    "harness_curve",
    metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("idx", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("elapsed_s", FLOAT, nullable=False),
    sa.Column("tokens", sa.BigInteger, nullable=False),
    sa.Column("train_loss", FLOAT, nullable=True),
    sa.Column("val_loss", FLOAT, nullable=True),
    # Held-out targets the point was scored on; NULL in studies of schema 1 and older results.
    sa.Column("eval_tokens", sa.BigInteger, nullable=True),
)

sample = sa.Table(
    "harness_sample",
    metadata,
    sa.Column("trial_id", sa.Integer, primary_key=True),
    sa.Column("study_name", sa.String(512), nullable=False, index=True),
    sa.Column("trial_number", sa.Integer, nullable=False),
    sa.Column("prompt", TEXT, nullable=False),
    sa.Column("text", TEXT, nullable=False),
)


def curve_step(index: int, *, budget: float, curve_points: int) -> int:
    """The step under which curve point ``index`` (1 .. ``curve_points``, at budget fraction
    ``index / curve_points``) is reported: its elapsed budget in whole seconds, which is what
    Optuna's dashboard plots, or the index itself where the budget has fewer seconds than points
    (so steps never repeat). The same for every trial of a study, so pruners compare trials at
    the same point of their budget."""
    return max(round(index * budget / curve_points), index)
