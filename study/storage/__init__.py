"""The study's storage: one database (SQLite, PostgreSQL or MySQL/MariaDB) holding Optuna's tables
and the harness's own, and everything that keeps it whole when several workers share it.

``store`` checks and opens a storage URL and reads and writes the harness rows; ``optuna_store``
wraps Optuna once (``SharedStudy``); ``schema`` defines the harness tables and
``harness_tables`` creates or upgrades them; ``retry`` rides out a database that is briefly away;
``pending`` keeps results that could not be written until they can; ``stale`` fails and requeues
the trials of dead workers; ``study_lock`` and ``server_lock`` are the locks the workers take.
"""
