"""Each analysis command's library, named as its command: a study's frames in, a result with its
text, figure and JSON out, used by the command and by the report.

``crossover`` (throughput per device and the crossover N*), ``frontier`` (quality against size
and its Pareto frontier), ``scaling_law`` (the loss law on a study and the size it predicts),
``compare`` (positional scheme, MLP or regularisation at equal size), ``curves`` (each trial's
loss curve) and ``trials`` (the trials as a CSV table).
"""
