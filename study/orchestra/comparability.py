"""What makes the trials of one study compare, fixed when the study is made, checked by every run.

A study's trials rank models against each other only if every trial trained for the same budget
on the same corpus, was scored on the same held-out tokens by the same protocol, and was drawn
from the same search space. The first run of a study records these terms as study user
attributes; every later run (on any machine, concurrent ones included) compares its own under
the study lock and is refused, with one line, where one differs. Terms a study made by an older
version lacks are recorded by the first run that has them.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from study.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import optuna

# Study user attribute -> how a refusal names it.
TERMS = {
    "budget": "budget (--budget, seconds)",
    "corpus": "corpus (--data; its fingerprint)",
    "heldout": "held-out token set (sha256 of its token ids)",
    "max_stories": "training stories (--max-stories)",
    "eval_tokens": "evaluation protocol (held-out tokens scored per evaluation, eval_tokens)",
    "sweep": "sweep (--sweep)",
    "search_space": "sweep's search space (its parameters and their ranges)",
    "vocab_sizes": "vocabularies (the sweep's VOCAB_SIZES, or its vocab_size choices)",
    "eval_bytes": "held-out text (eval_bytes: UTF-8 bytes of whole held-out stories scored)",
    "objective": "objective (study.objective: what the trials' values measure)",
}


def search_space(trial: optuna.Trial) -> dict[str, str]:
    """The parameters ``trial`` suggested and their distributions (Optuna's JSON): the sweep's
    search space as far as one suggestion shows it (the branch a fixed seed takes)."""
    from optuna.distributions import distribution_to_json

    return {name: distribution_to_json(d) for name, d in sorted(trial.distributions.items())}


def heldout_digest(valid: np.ndarray) -> str:
    """sha256 of the held-out token ids (the corpus, tokenizer and story limit all show in it)."""
    return hashlib.sha256(valid.tobytes()).hexdigest()  # one copy: megabytes, not more


def check_terms(stored: dict[str, Any], ours: dict[str, Any], *, study_name: str) -> dict[str, Any]:
    """Compare this run's ``ours`` with the terms the study ``stored``.

    Returns:
        The terms the study lacks, to be recorded now.

    Raises:
        UsageError: one line naming the first term that differs, both values, and the way out.
    """
    for key, value in ours.items():
        if key in stored and _canonical(stored[key]) != _canonical(value):
            was, now = stored[key], value
            if isinstance(was, dict) and isinstance(now, dict):  # name one parameter that differs
                name = min(k for k in set(was) | set(now) if was.get(k) != now.get(k))
                was, now = (f"{name} {_distribution(d.get(name))}" for d in (was, now))
            raise UsageError(
                f"study {study_name!r} was made with another {TERMS[key]}: {_shown(was)}, this "
                f"run has {_shown(now)}; its trials would not compare with this run's (run it "
                f"as it was made, or choose another --study-name)"
            )
    return {key: value for key, value in ours.items() if key not in stored}


def _canonical(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = float(value)  # a budget of 60 is a budget of 60.0
    return json.dumps(value, sort_keys=True)


def _distribution(text: Any) -> str:
    """A stored distribution as Optuna prints it, e.g. ``FloatDistribution(high=0.01, ...)``."""
    from optuna.distributions import json_to_distribution

    if text is None:
        return "absent"
    try:
        return repr(json_to_distribution(str(text)))
    except (ValueError, KeyError, TypeError):
        return str(text)


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64 and value.isalnum():
        return value[:12]  # a digest: its head tells two apart
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
