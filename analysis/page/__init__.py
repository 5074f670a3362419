"""The report: one self-contained HTML page for a study (``python -m analysis.report``).

``report`` assembles the page from the views' results; ``sections`` holds the sections beyond
the fits' own (curves, the held-out check, repeated data, samples); ``parts`` the escaped HTML
fragments (sections, embedded figures, tables, notes) every section is made of.
"""
