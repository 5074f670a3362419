"""Analysis of a study: storage -> frames -> fits -> figures and text -> report.

In the order the data flows: ``load`` (a study or CSV file as frames, read-only; without a name
the most recently run study; ``trials_table`` for pandas users) and ``selection`` (which trials
and points); ``fits/`` (pure fits: throughput and crossover, the loss law, the data-constrained
law, the held-out check); ``views/`` (each command's library, named as its command);
``figures/`` (matplotlib figures, counts formatted by ``study.fmt``); ``page/`` (the report's
HTML); ``output`` and ``args`` (what the commands share). Commands, each parsing its options and
calling one library function: ``python -m analysis.crossover | frontier | scaling_law | compare
| curves | trials | predict | report``.
"""
