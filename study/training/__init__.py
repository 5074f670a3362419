"""The training job: what runs inside the ``python -m study.train`` child, one trial at a time.

``setup`` builds a job before the clock (tokens, model, step, held-out windows); ``trainer``
runs the budgeted loop and the final evaluation, writing its events through ``study.events``;
``step`` builds the optimizer step once (fused head, compile, CUDA graph where the device
allows); ``clock`` keeps the budget and tunes CPU threads; ``evaluate`` scores the fixed
held-out windows; ``optim`` and ``schedule`` are the optimizer and the schedules as functions of
the elapsed budget fraction. Models come from ``study.models``, tokens from ``study.data``.
"""
