"""Analysis of a study: storage -> frames -> fits -> figures and text -> report.

Libraries, in the order the data flows through them: ``load`` (a study or CSV file as frames,
read-only; without a name the most recently run study; ``trials_table`` for pandas users),
``selection`` (which trials and points), ``fits`` / ``loss_law`` / ``data_constrained`` (pure
fits), ``throughput`` (per-device crossover), ``pareto`` (the frontier), ``scaling`` (the loss
law on a study and its prediction), ``holdout`` (predictions checked on held-out sizes),
``groups`` (positional scheme and MLP compared), ``loss_curves`` (each trial's curve with its
size), ``export`` (the trials as CSV), ``plots`` / ``law_plots`` / ``ladder_plot`` (figures,
counts formatted by ``study.fmt``), ``html_parts`` and ``report_sections`` (pieces of the
page), ``report_html`` (the page), ``output`` and ``args`` (what the commands share).
Commands, each parsing its options and calling one library function:
``python -m analysis.crossover | frontier | scaling_law | compare | curves | trials | predict |
report``.
"""
