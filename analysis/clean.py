"""Strings read from a study database, made safe to show: the boundary every reader passes.

A study database may come from anyone (a merged file, a shared server): its strings are shown
in terminals, CSV files and the report. ``printable`` drops control characters (terminal escape
sequences, bells, C1 codes) but keeps newlines and tabs; ``clean_frame`` applies it to every
text cell of a frame as it is loaded; ``csv_safe`` neutralises cells a spreadsheet would run as
a formula (text starting with ``= + - @``, or a tab or carriage return), by a leading ``'``.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str) -> str:
    """``text`` without control characters (newlines and tabs kept)."""
    return _CONTROL.sub("", text)


def _texts(column: pd.Series) -> bool:
    """Whether ``column`` may hold strings (object, or pandas' own string dtype)."""
    return column.dtype == object or pd.api.types.is_string_dtype(column.dtype)


def _clean(value: Any) -> Any:
    return printable(value) if isinstance(value, str) else value


def clean_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every string cell (and column name) passed through ``printable``."""
    out = frame.rename(columns=lambda c: _clean(c))
    for column in out.columns:
        if _texts(out[column]):
            out[column] = out[column].map(_clean)
    return out


def _defused(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with text cells that start like a formula prefixed by ``'`` (numbers are
    left alone: a negative number is not text)."""
    out = frame.copy()
    for column in out.columns:
        if _texts(out[column]):
            out[column] = out[column].map(_defused)
    return out
