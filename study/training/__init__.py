"""The training job: what runs inside the ``python -m study.train`` child, one trial at a time.

``trainer`` sets a job up before the clock (tokens, model, step), runs the budgeted loop and the
final evaluation; ``step`` builds the optimizer step once (fused head, compile, CUDA graph where
the device allows); ``clock`` keeps the budget, tunes CPU threads and writes the JSON-lines event
stream the parent reads; ``evaluate`` scores the fixed held-out windows; ``optim`` and
``schedule`` are the optimizer and the schedules as functions of the elapsed budget fraction.
Models come from ``study.models``, tokens from ``study.data``.
"""
