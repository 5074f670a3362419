"""``load_tokens``: corpus -> byte-level BPE -> cached token files, the trainer's one entry point.

The first call for a corpus, vocab size and story limit streams the corpus, trains the tokenizer
(once per corpus and vocab size) and encodes both splits into files (:mod:`study.data.build`);
later calls, from any process, map the cached files read-only (:mod:`study.data.cache`). All of
this happens before a trial's clock starts. ``max_stories="auto"`` sizes the corpus to the budget
and device (:mod:`study.data.budget`); :func:`resolve_max_stories` turns it into a number once,
so every trial of a study reads the same corpus.
"""

from __future__ import annotations

import argparse
import json
import logging
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from study.data import bpe, build, cache, corpus, hub, online
from study.data.budget import auto_max_stories
from study.errors import UsageError, first_line
from study.fileio import write_json

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

AUTO = "auto"
# What ``auto`` assumes when a caller gives no budget (study.run and study.train always do).
DEFAULT_BUDGET = 300.0


@dataclass(frozen=True, eq=False)
class TokenData:
    """Token ids of both splits and what is needed to read them.

    ``train`` and ``valid`` are 1-D read-only id arrays (memory maps of the cache files; uint16
    when vocab_size <= 65536, else uint32): stories in corpus order, each followed by ``eot_id``.
    ``token_bytes[i]`` is the number of UTF-8 bytes id ``i`` decodes to, with ``eot_id``
    counting 1 for the story boundary, so ``token_bytes[ids].sum()`` is the exact byte count
    behind bits per byte. ``vocab_size`` is the size asked for; the tokenizer may hold fewer ids
    (the rest count 0 bytes). ``max_stories`` is the training-story limit the corpus was read
    with (``None``: all of it).
    """

    train: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    token_bytes: np.ndarray = field(repr=False)
    tokenizer: Tokenizer = field(repr=False)
    eot_id: int
    vocab_size: int
    fingerprint: str
    source: str
    max_stories: int | None = None

    @property
    def unique_tokens(self) -> int:
        """U: the distinct training tokens a trial can see (epochs = tokens seen / U)."""
        return int(self.train.size)


def default_cache_dir() -> Path:
    """``$STUDY_CACHE_DIR`` if set, else ``~/.cache/five-minute-study``."""
    env = os.environ.get("STUDY_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "five-minute-study"


def resolve_data(data: str | None) -> str | None:
    """The corpus ``data`` means on this machine, decided once per process and study: ``data``
    itself when given; for ``None`` (TinyStories on the hub) ``None`` when the hub answers or the
    dataset is cached, else ``"sample"``, the bundled sample (:func:`online.choose_corpus`, a
    few seconds at most). The first decision of a kind prints its one line (on stdout, whatever
    logging is set up: it says what the run trains on). Call it before the first trial and store
    the result in the config, so the trials read and record the corpus actually used.
    """
    if data is not None:
        return data
    key = (hub.HUB_DATASET, online.hub_endpoint())
    choice = _CHOICES.get(key)
    if choice is None:
        choice = _CHOICES[key] = online.choose_corpus(None, dataset=hub.HUB_DATASET)
        if choice.note:
            print(choice.note, flush=True)
    return choice.data


# Decisions made in this process, by dataset and endpoint: one probe each.
_CHOICES: dict[tuple[str, str], online.CorpusChoice] = {}


def open_source(data: str | None) -> corpus.Source:
    """``None``: TinyStories through ``datasets`` (``hub.HUB_DATASET``), or the bundled sample
    when the hub cannot be reached (:func:`resolve_data`); ``"sample"``: the bundled sample;
    else a local corpus.

    Raises:
        UsageError: a missing or unsupported local path.
    """
    data = resolve_data(data)
    return hub.HubCorpus(hub.HUB_DATASET) if data is None else corpus.find_local_corpus(data)


def load_tokens(
    data: str | None,
    *,
    vocab_size: int = 4096,
    cache_dir: Path | None = None,
    max_stories: int | str | None = AUTO,
    budget: float | None = None,
    device: str = "auto",
) -> TokenData:
    """Tokenize a corpus with a byte-level BPE of ``vocab_size`` ids, cached on disk.

    Args:
        data: a local ``.txt``, ``.txt.xz``, ``.txt.gz``, ``.jsonl`` or ``.parquet`` file or a
            folder of them; ``"sample"``, the bundled TinyStories sample; ``None`` streams
            TinyStories (``hub.HUB_DATASET``) with ``datasets``, or reads the sample when the
            hub cannot be reached (:func:`resolve_data`).
        vocab_size: ids in the BPE, 257 (256 bytes and end-of-text) to 2**32 - 1.
        cache_dir: where tokenizers and token files are kept (default: default_cache_dir()).
        max_stories: at most this many training stories are read (and, from the hub, at most
            this many held-out ones); ``None`` reads all; ``"auto"`` sizes it to ``budget`` and
            ``device`` (:func:`resolve_max_stories`).
        budget, device: what ``auto`` sizes for (default: DEFAULT_BUDGET, the present device).

    Raises:
        UsageError: bad vocab_size or max_stories; a missing, unsupported, unreadable or
            empty corpus; a hub dataset that cannot be loaded; a cache folder that cannot be
            created or written.
    """
    _check_int(
        "vocab_size",
        vocab_size,
        bpe.MIN_VOCAB,
        bpe.MAX_VOCAB,
        why=("256 byte tokens and <|endoftext|>", "token ids must fit uint32"),
    )
    source = open_source(data)
    cache_dir = _cache_dir(cache_dir)
    fingerprint = source.fingerprint()
    limit = (
        _checked_limit(max_stories)
        if max_stories != AUTO
        else _auto_limit(source, fingerprint, budget=budget, device=device, cache_dir=cache_dir)
    )
    start = time.perf_counter()
    key = cache.tokenizer_key(fingerprint, vocab_size, sample_bytes=bpe.TOKENIZER_SAMPLE_BYTES)
    tokenizer, tokenizer_sha, built = _tokenizer(source, cache_dir, key, vocab_size=vocab_size)
    manifest = cache.manifest_path(cache_dir, key, tokenizer_sha, limit)
    meta = {
        "fingerprint": fingerprint,
        "vocab_size": vocab_size,
        "tokenizer_sha256": tokenizer_sha,
        "max_stories": limit,
    }
    arrays = cache.load_arrays(manifest, meta=meta)
    if arrays is None:
        built = True
        arrays = _build_arrays(
            source,
            manifest,
            cache_dir,
            tokenizer=tokenizer,
            limit=limit,
            vocab_size=vocab_size,
            meta=meta,
        )
    log.info(
        "token cache %s %s in %.2fs",
        manifest.name,
        "built" if built else "loaded",
        time.perf_counter() - start,
    )
    return _token_data(
        arrays, source, tokenizer, vocab_size=vocab_size, fingerprint=fingerprint, limit=limit
    )


def _token_data(
    arrays: dict[str, np.memmap],
    source: corpus.Source,
    tokenizer: Tokenizer,
    *,
    vocab_size: int,
    fingerprint: str,
    limit: int | None,
) -> TokenData:
    """The loaded arrays with the tokenizer's end-of-text id and bytes per token."""
    eot_id = build.eot_id(tokenizer)
    return TokenData(
        train=arrays["train"],
        valid=arrays["valid"],
        token_bytes=bpe.token_byte_lengths(tokenizer, vocab_size=vocab_size, eot_id=eot_id),
        tokenizer=tokenizer,
        eot_id=eot_id,
        vocab_size=vocab_size,
        fingerprint=fingerprint,
        source=source.describe(max_stories=limit),
        max_stories=limit,
    )


def _build_arrays(
    source: corpus.Source,
    manifest: Path,
    cache_dir: Path,
    *,
    tokenizer: Tokenizer,
    limit: int | None,
    vocab_size: int,
    meta: dict[str, Any],
) -> dict[str, np.memmap]:
    """Tokenize ``source`` into the cache under the build lock and read the arrays back."""
    with cache.build_lock(cache_dir, manifest.stem):
        # Another process may have finished the build while this one waited for the lock.
        arrays = cache.load_arrays(manifest, meta=meta)
        if arrays is None:
            _write_or_fail(
                cache_dir,
                lambda: build.build_arrays(
                    source,
                    manifest,
                    tokenizer=tokenizer,
                    max_stories=limit,
                    vocab_size=vocab_size,
                    meta=meta,
                ),
            )
            arrays = cache.load_arrays(manifest, meta=meta)
    if arrays is None:  # written and at once unreadable: the folder is not keeping files
        raise UsageError(f"cannot read back the token cache in {cache_dir}")
    return arrays


def resolve_max_stories(
    data: str | None,
    *,
    max_stories: int | str | None,
    budget: float | None,
    device: str,
    cache_dir: Path | None = None,
) -> int | None:
    """``max_stories`` as the number of training stories to read (``None``: all of them).

    ``auto`` applies :func:`study.data.budget.auto_max_stories` to the corpus's size (from the
    dataset card for TinyStories on the hub, else one counting pass, cached per corpus) and the
    peak tokens/s of ``device`` (``auto`` is resolved as the trainer would: cuda, mps, cpu).

    Raises:
        UsageError: a bad ``max_stories``, data path or cache folder; an unreadable corpus.
    """
    if max_stories != AUTO:
        return _checked_limit(max_stories)
    source = open_source(data)
    return _auto_limit(
        source, source.fingerprint(), budget=budget, device=device, cache_dir=_cache_dir(cache_dir)
    )


def _auto_limit(
    source: corpus.Source,
    fingerprint: str,
    *,
    budget: float | None,
    device: str,
    cache_dir: Path,
) -> int:
    stories, size = corpus_size(source, fingerprint, cache_dir=cache_dir)
    if budget is None:
        log.info("max_stories auto without a budget: sized for %g s", DEFAULT_BUDGET)
        budget = DEFAULT_BUDGET
    kind = device_type(device)
    limit = auto_max_stories(budget=budget, device=kind, train_stories=stories, train_bytes=size)
    log.info("max_stories auto: %d of %d training stories (%s, %g s)", limit, stories, kind, budget)
    return limit


def max_stories_arg(text: str) -> int | str:
    """argparse type of ``--max-stories``: ``auto`` or a positive integer."""
    if text == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected auto or a positive integer, got {text!r}")
    return value


def corpus_size(source: corpus.Source, fingerprint: str, *, cache_dir: Path) -> tuple[int, int]:
    """(training stories, their UTF-8 bytes) of the whole corpus: known for TinyStories on the
    hub, else counted in one pass and cached per corpus fingerprint."""
    if isinstance(source, hub.HubCorpus) and source.name in hub.KNOWN_TRAIN_SIZE:
        return hub.KNOWN_TRAIN_SIZE[source.name]
    path = cache.size_path(cache_dir, fingerprint, corpus.READER_VERSION)
    try:
        known = json.loads(path.read_bytes())
        return int(known["train_stories"]), int(known["train_bytes"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("corpus size file %s is corrupt (%s); counting again", path, exc)
    stories, size = build.count_training_stories(source)
    _write_or_fail(
        cache_dir, lambda: write_json(path, {"train_stories": stories, "train_bytes": size})
    )
    return stories, size


def device_type(device: str) -> str:
    """``auto`` as the trainer resolves it (cuda, then mps, then cpu); others unchanged (whether
    they are present is checked where a job starts, not here)."""
    if device != "auto":
        return device
    from study.device import resolve_device  # imports torch: only for auto

    return resolve_device(device).type


def _tokenizer(
    source: corpus.Source, cache_dir: Path, key: str, *, vocab_size: int
) -> tuple[Tokenizer, str, bool]:
    """The cached tokenizer of ``key`` and its sha256, trained first (under the lock) if absent
    or damaged; the flag says whether it was trained."""
    loaded = cache.load_tokenizer(cache_dir, key)
    if loaded is not None:
        return *loaded, False
    with cache.build_lock(cache_dir, key):
        loaded = cache.load_tokenizer(cache_dir, key)
        if loaded is not None:
            return *loaded, False
        tokenizer = build.train_tokenizer(source, vocab_size=vocab_size)
        _write_or_fail(cache_dir, lambda: cache.save_tokenizer(cache_dir, key, tokenizer))
    return tokenizer, cache.tokenizer_sha256(tokenizer), True


def _cache_dir(cache_dir: Path | None) -> Path:
    path = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create cache folder {path}: {exc.strerror}") from None
    return path


def _write_or_fail(cache_dir: Path, write: Callable[[], object]) -> None:
    # Token files are read through a memory map, so without the cache there is no data.
    try:
        write()
    except OSError as exc:
        raise UsageError(
            f"cannot write the token cache in {cache_dir}: {first_line(exc)} (free space or "
            f"choose another cache folder)"
        ) from None


def _checked_limit(max_stories: object) -> int | None:
    if max_stories is None:
        return None
    if isinstance(max_stories, str):
        raise UsageError(f"max_stories must be a positive integer or auto, got {max_stories!r}")
    _check_int("max_stories", max_stories, 1, None)
    return int(max_stories)  # type: ignore[call-overload]


def _check_int(
    name: str, value: object, low: int, high: int | None, *, why: tuple[str, str] | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < low:
        reason = f" ({why[0]})" if why else ""
        raise UsageError(f"{name} must be at least {low}{reason}, got {value}")
    if high is not None and value > high:
        reason = f" ({why[1]})" if why else ""
        raise UsageError(f"{name} must be at most {high}{reason}, got {value}")
