"""``load_tokens``: corpus -> byte-level BPE -> cached token arrays, the trainer's one entry point.

The first call for a corpus and vocab size reads the corpus, trains the tokenizer and encodes
both splits (seconds); later calls, from any process, load the cached arrays (well under a
second). All of this happens before a trial's clock starts.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from study.data import bpe, cache, corpus
from study.errors import UsageError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TokenData:
    """Token ids of both splits and what is needed to read them.

    ``train`` and ``valid`` are 1-D id arrays (uint16 when vocab_size <= 65536, else uint32):
    stories in corpus order, each followed by ``eot_id``. ``token_bytes[i]`` is the number of
    UTF-8 bytes id ``i`` decodes to, with ``eot_id`` counting 1 for the story boundary, so
    ``token_bytes[ids].sum()`` is the exact byte count behind bits per byte. ``vocab_size`` is
    the size asked for; the tokenizer may hold fewer ids (the rest count 0 bytes).
    """

    train: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    token_bytes: np.ndarray = field(repr=False)
    tokenizer: Tokenizer = field(repr=False)
    eot_id: int
    vocab_size: int
    fingerprint: str
    source: str


def default_cache_dir() -> Path:
    """``$STUDY_CACHE_DIR`` if set, else ``~/.cache/five-minute-study``."""
    env = os.environ.get("STUDY_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "five-minute-study"


def load_tokens(
    data: str | None,
    *,
    vocab_size: int = 4096,
    cache_dir: Path | None = None,
    max_stories: int = 100_000,
) -> TokenData:
    """Tokenize a corpus with a byte-level BPE of ``vocab_size`` ids, cached on disk.

    Args:
        data: a local ``.txt``, ``.txt.xz``, ``.txt.gz``, ``.jsonl`` or ``.parquet`` file or a
            folder of them; ``None`` streams TinyStories (``corpus.HUB_DATASET``) with
            ``datasets``.
        vocab_size: ids in the BPE, 257 (256 bytes and end-of-text) to 2**32 - 1.
        cache_dir: where tokenizers and token arrays are kept (default: default_cache_dir()).
        max_stories: at most this many training stories are read (and, from the hub, at most
            this many held-out ones).

    Raises:
        UsageError: bad vocab_size or max_stories; a missing, unsupported, unreadable or
            empty corpus; a hub dataset that cannot be loaded; a cache folder that cannot be
            created.
    """
    _check_int("vocab_size", vocab_size, bpe.MIN_VOCAB, bpe.MAX_VOCAB, why=(
        "256 byte tokens and <|endoftext|>", "token ids must fit uint32"))
    _check_int("max_stories", max_stories, 1, None)
    read: Callable[[], corpus.Corpus]
    if data is None:
        name = corpus.HUB_DATASET
        fingerprint = corpus.hub_fingerprint(name, max_stories=max_stories)
        source = f"hub: {name} (first {max_stories} stories of train and validation)"

        def read() -> corpus.Corpus:
            return corpus.load_hub_corpus(name, max_stories=max_stories)
    else:
        local = corpus.find_local_corpus(data)
        fingerprint = local.fingerprint(max_stories=max_stories)
        source = local.describe()

        def read() -> corpus.Corpus:
            return local.read(max_stories=max_stories)

    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create cache folder {cache_dir}: {exc.strerror}") from None
    key = cache.cache_key(fingerprint, vocab_size)
    start = time.perf_counter()
    found = _load_cached(cache_dir, key, fingerprint=fingerprint, vocab_size=vocab_size)
    built = False
    if found is None:
        with cache.build_lock(cache_dir, key):
            # Another process may have finished the build while this one waited for the lock.
            found = _load_cached(cache_dir, key, fingerprint=fingerprint, vocab_size=vocab_size)
            if found is None:
                found = _build(cache_dir, key, read, fingerprint=fingerprint, vocab_size=vocab_size)
                built = True
    log.info(
        "token cache %s %s in %.2fs", key, "built" if built else "loaded",
        time.perf_counter() - start,
    )
    tokenizer, arrays = found
    eot_id = _eot_id(tokenizer)
    return TokenData(
        train=arrays["train"],
        valid=arrays["valid"],
        token_bytes=bpe.token_byte_lengths(tokenizer, vocab_size=vocab_size, eot_id=eot_id),
        tokenizer=tokenizer,
        eot_id=eot_id,
        vocab_size=vocab_size,
        fingerprint=fingerprint,
        source=source,
    )


_Found = tuple["Tokenizer", dict[str, np.ndarray]]


def _load_cached(cache_dir: Path, key: str, *, fingerprint: str, vocab_size: int) -> _Found | None:
    loaded = cache.load_tokenizer(cache_dir, key)
    if loaded is None:
        return None
    tokenizer, tokenizer_sha = loaded
    arrays = cache.load_arrays(
        cache.manifest_path(cache_dir, key, tokenizer_sha),
        meta=_meta(fingerprint, vocab_size, tokenizer_sha),
    )
    return None if arrays is None else (tokenizer, arrays)


def _build(
    cache_dir: Path, key: str, read: Callable[[], corpus.Corpus], *, fingerprint: str,
    vocab_size: int,
) -> _Found:
    start = time.perf_counter()
    stories = read()
    log.info(
        "read %d training and %d held-out stories in %.1fs",
        len(stories.train), len(stories.valid), time.perf_counter() - start,
    )
    loaded = cache.load_tokenizer(cache_dir, key)
    if loaded is None:
        tokenizer = bpe.train_bpe(stories.train, vocab_size=vocab_size)
        tokenizer_sha = cache.tokenizer_sha256(tokenizer)
        _try_write(lambda: cache.save_tokenizer(cache_dir, key, tokenizer))
    else:
        tokenizer, tokenizer_sha = loaded
    eot_id = _eot_id(tokenizer)
    dtype = bpe.token_dtype(vocab_size)
    start = time.perf_counter()
    arrays = {
        split: bpe.encode_stories(tokenizer, getattr(stories, split), eot_id=eot_id, dtype=dtype)
        for split in cache.SPLITS
    }
    log.info(
        "encoded %d training and %d held-out tokens in %.1fs",
        arrays["train"].size, arrays["valid"].size, time.perf_counter() - start,
    )
    _try_write(lambda: cache.save_arrays(
        cache.manifest_path(cache_dir, key, tokenizer_sha), arrays,
        meta=_meta(fingerprint, vocab_size, tokenizer_sha),
    ))
    return tokenizer, arrays


def _meta(fingerprint: str, vocab_size: int, tokenizer_sha: str) -> dict[str, object]:
    return {"fingerprint": fingerprint, "vocab_size": vocab_size, "tokenizer_sha256": tokenizer_sha}


def _try_write(write: Callable[[], None]) -> None:
    # A full disk or read-only cache costs the next run a rebuild, not this run its data.
    try:
        write()
    except OSError as exc:
        log.warning("cannot write the token cache (%s); continuing without it", exc)


def _eot_id(tokenizer: Tokenizer) -> int:
    eot_id = tokenizer.token_to_id(corpus.EOT)
    if eot_id is None:  # load_tokenizer and train_bpe both guarantee it
        raise RuntimeError(f"tokenizer has no {corpus.EOT} token")
    return int(eot_id)


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
