"""What makes the trials of one study compare, fixed when the study is made, checked by every run.

A study's trials rank models against each other only if every trial trained for the same budget
on the same corpus, was scored on the same held-out tokens by the same protocol, and was drawn
from the same search space. The first run of a study records these terms as study user
attributes; every later run (on any machine, concurrent ones included) compares its own under
the study lock and is refused, with one line, where one differs. Terms a study made by an older
version lacks are recorded by the first run that has them (``late_terms_note`` says so: what the
earlier trials had is unknown, not a mismatch).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from study.errors import UsageError

if TYPE_CHECKING:
    import numpy as np
    import optuna

    from study.config import TrainConfig

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
    "settings": "sweep's fixed settings (the TrainConfig its suggest returns)",
}
# TrainConfig fields a run sets over the sweep's (``FixedTerms``), or that have terms of their own.
NOT_SETTINGS = frozenset(
    {"budget", "data", "device", "seed", "max_stories", "eval_tokens", "curve_eval_tokens"}
)


def search_space(trial: optuna.Trial) -> dict[str, str]:
    """The parameters ``trial`` suggested and their distributions (Optuna's JSON): the sweep's
    search space as far as one suggestion shows it (the branch a fixed seed takes)."""
    from optuna.distributions import distribution_to_json

    return {name: distribution_to_json(d) for name, d in sorted(trial.distributions.items())}


def fixed_settings(
    build: Callable[[Any], TrainConfig], trial: optuna.Trial, probe: TrainConfig
) -> dict[str, Any]:
    """The sweep's effective fixed settings: every field of the config it builds (``model.``
    fields by their dotted names) but those the run sets over it (``NOT_SETTINGS``), so a sweep
    file edited in place (``seq_len`` changed, same name and space) shows.

    Built from a trial that suggests each parameter's first value (the low end of a range, the
    first choice), so the fields a sampled parameter drives take the same values on every
    machine and Optuna version; where that trial takes another branch or builds no valid
    config, from ``probe`` (the seeded suggestion ``trial`` made).
    """
    from optuna.trial import FixedTrial

    from study.errors import UsageError

    first = {name: _first_value(d) for name, d in trial.distributions.items()}
    try:
        config = build(FixedTrial(first))
    except UsageError:
        config = probe
    flat: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif key not in NOT_SETTINGS:
            flat[key] = value
    return dict(sorted(flat.items()))


def _first_value(distribution: Any) -> Any:
    choices = getattr(distribution, "choices", None)
    return choices[0] if choices is not None else distribution.low


def late_terms_note(stored: dict[str, Any], missing: dict[str, Any], *, study_name: str) -> str:
    """A note where an existing study (it has a budget) lacks terms this run records now: an
    older version made it, and what its earlier trials had there is unknown. "" otherwise."""
    late = [TERMS[key] for key in missing if key in TERMS]
    if "budget" not in stored or not late:
        return ""
    return (
        f"note: study {study_name!r} was made before its {', '.join(late)} were recorded; "
        f"this run's are recorded now (its earlier trials' are unknown, not checked)"
    )


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
        if key in stored and _differs(key, stored[key], value):
            was, now = stored[key], value
            if isinstance(was, dict) and isinstance(now, dict):  # name one field that differs
                names = set(was) & set(now) if key == "settings" else set(was) | set(now)
                name = min(k for k in names if _canonical(was.get(k)) != _canonical(now.get(k)))
                show = _shown if key == "settings" else _distribution
                was, now = (f"{name} {show(d.get(name))}" for d in (was, now))
            raise UsageError(
                f"study {study_name!r} was made with another {TERMS[key]}: {_shown(was)}, this "
                f"run has {_shown(now)}; its trials would not compare with this run's (run it "
                f"as it was made, or choose another --study-name)"
            )
    return {key: value for key, value in ours.items() if key not in stored}


def _differs(key: str, was: Any, now: Any) -> bool:
    """Whether a stored term and this run's differ. Fixed settings compare on the fields both
    name: a field a later version of the harness added (or dropped) is unknown, not a change."""
    if key == "settings" and isinstance(was, dict) and isinstance(now, dict):
        return any(_canonical(was[k]) != _canonical(now[k]) for k in set(was) & set(now))
    return _canonical(was) != _canonical(now)


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
