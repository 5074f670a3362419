"""The fits' own error: data no fit can use.

The fits are pure (arrays in, frozen results out) and know nothing of a command line, so they
raise :class:`FitError`, a ``ValueError``; the analysis commands turn it into one line on stderr
and exit status 2 (``analysis.args.analysis_main``), the views and the report into a note.
"""

from __future__ import annotations


class FitError(ValueError):
    """Inputs no fit can use: too few points or sizes, bad values, lengths that differ."""
