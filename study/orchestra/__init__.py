"""The orchestration of a study: the parent processes that ask Optuna for trials and run them.

``runner`` validates a run, creates the study once and starts the workers (``launch``: what each
worker process is given); ``worker`` asks for a trial, trains it in a child and records how it
ended; ``job`` runs one ``python -m study.train`` child and reads its event stream; ``progress``
is what a person watches (a bar on a terminal, plain lines elsewhere); ``comparability`` fixes
what makes a study's trials compare and checks every run against it.
"""
