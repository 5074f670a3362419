"""HTML fragments of the report page: sections, figures, tables and notes, escaped.

Every text that reaches the page passes through :func:`e`; figures are embedded as base64 PNG
so the page is one self-contained file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from analysis.figures import plots
from analysis.fits.errors import FitError
from analysis.selection import fmt_value
from study.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; } td.text { text-align: left; white-space: pre-wrap; max-width: 700px; }
pre { background: #f7f7f7; padding: 0.6em; white-space: pre-wrap; }
img { max-width: 100%; } .note { color: #a33; }
"""


def section(title: str, build: Callable[[], list[str]]) -> list[str]:
    """The heading and what ``build`` returns, or the reason (a UsageError or FitError) it could not."""
    try:
        body = build()
    except (UsageError, FitError) as exc:
        body = [note(str(exc))]
    return [f"<h2>{e(title)}</h2>", *body]


def figure(fig: Figure) -> str:
    encoded = base64.b64encode(plots.render(fig, "png")).decode("ascii")
    return f'<p><img alt="figure" src="data:image/png;base64,{encoded}"></p>'


def table(frame: pd.DataFrame, columns: list[tuple[str, str, str]]) -> str:
    """``frame``'s rows as a table of (heading, column, format spec) columns (see
    :func:`analysis.selection.fmt_value`; ``count`` reads 754k, 1.23M)."""
    rows = [
        tuple(fmt_value(r.get(col), spec) for _, col, spec in columns) for _, r in frame.iterrows()
    ]
    return plain_table([h for h, _, _ in columns], rows)


def plain_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def kv_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{e(k)}</th><td class=text>{e(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def pre(text: str) -> str:
    return f"<pre>{e(text)}</pre>"


def note(text: str) -> str:
    return f'<p class="note">{e(text)}</p>'


def e(text: str) -> str:
    return html.escape(text, quote=True)
