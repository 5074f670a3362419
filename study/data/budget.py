"""``max_stories`` ``auto``: enough of the corpus that the study's fastest trial sees its training
tokens at most ~4 times, up to the whole corpus.

Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models", arXiv 2305.16264) find up to
about 4 epochs of repeated data nearly as good as fresh data; beyond that its value decays. So the
rule is::

    tokens needed  U = peak tokens/s of the device x budget / MAX_EPOCHS
    stories        S = ceil(U x BYTES_PER_TOKEN / mean UTF-8 bytes of the corpus's stories)
    max_stories      = min(training stories in the corpus, max(AUTO_MIN_STORIES, S))

The fastest trial of a study is its smallest model, so the peak is the highest tokens/s measured
for the smallest models, per device kind (:data:`PEAK_TOKENS_PER_SECOND`, with where each number
comes from). An estimate above the true peak errs to the safe side: fewer epochs, at the price of
a larger token cache. The rule resolves once, before the first trial (``study.orchestra.runner``
``prepare_tokens`` for a study, at startup for ``study.train``), so all trials of a study share
one corpus; a study stores the number and keeps it when resumed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

MAX_EPOCHS = 4.0
# Never fewer: about 4 M tokens build in seconds (less than a trial's start-up), and a hash-split
# corpus then still holds out ~600 stories (~120 k tokens) for the evaluation windows.
AUTO_MIN_STORIES = 20_000
# UTF-8 bytes per token of the byte-level BPE at the default vocab (4096): 3.98 on
# ../shared/data/tinystories' held-out stories (bpe.TOKENIZER_SAMPLE_BYTES). A larger vocab packs
# more bytes per token, so its trials see a little more than MAX_EPOCHS; a smaller one, less.
BYTES_PER_TOKEN = 4.0


@dataclass(frozen=True)
class Peak:
    tokens_per_second: float
    per_core: bool  # CPU: the figure is per core, times the cores this process may use
    source: str


PEAK_TOKENS_PER_SECOND: dict[str, Peak] = {
    "cuda": Peak(
        3.3e7,
        False,
        "H100 80GB HBM3, results/ default-h100-60s: 3.24e7 tok/s at 0.31 M parameters, "
        "the fastest of 21 trials (ladder-h100-300s: 2.54e7 at 0.36 M); taken for every "
        "CUDA device: an H200 is as fast, slower GPUs only get more data than needed",
    ),
    "mps": Peak(
        3.0e6, False, "not measured in this repository: an assumed tenth of the H100 figure"
    ),
    "cpu": Peak(
        5.0e4,
        True,
        "2-core AMD EPYC, results/ ladder-cpu-300s: 9.9e4 tok/s at 0.14 M parameters "
        "(default-cpu-60s: 7.9e4 at 0.31 M), i.e. 5e4 per core",
    ),
}


def peak_tokens_per_second(device: str, *, cores: int | None = None) -> float:
    """The table's peak for a resolved device type (``cuda``, ``mps``, ``cpu``).

    Args:
        device: the device type trials will run on.
        cores: CPU cores trials may use (default: those this process may run on).

    Raises:
        ValueError: a device type the table does not hold.
    """
    if device not in PEAK_TOKENS_PER_SECOND:
        raise ValueError(f"no peak tokens/s for device {device!r}")
    peak = PEAK_TOKENS_PER_SECOND[device]
    if not peak.per_core:
        return peak.tokens_per_second
    return peak.tokens_per_second * (cores if cores is not None else usable_cores())


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells, else all)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_max_stories(
    *, budget: float, device: str, train_stories: int, train_bytes: int, cores: int | None = None
) -> int:
    """The ``auto`` limit: training stories for at most MAX_EPOCHS epochs of the fastest trial.

    Args:
        budget: training seconds per trial.
        device: resolved device type (``cuda``, ``mps``, ``cpu``).
        train_stories: training stories in the whole corpus (the cap).
        train_bytes: their UTF-8 bytes (gives the mean story length).
        cores: for ``cpu``, the cores a trial may use (default: :func:`usable_cores`).

    Returns:
        A number of stories in ``[1, train_stories]``.
    """
    need_tokens = peak_tokens_per_second(device, cores=cores) * budget / MAX_EPOCHS
    mean_bytes = max(train_bytes, 1) / max(train_stories, 1)
    stories = math.ceil(need_tokens * BYTES_PER_TOKEN / mean_bytes)
    return max(1, min(train_stories, max(AUTO_MIN_STORIES, stories)))
