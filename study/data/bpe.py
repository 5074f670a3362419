"""Byte-level BPE: train it on a corpus prefix, encode stories in batches, count bytes.

Byte-level BPE is lossless (every string encodes and decodes back exactly) and every token
stands for a fixed byte string, so bits per byte computed from :func:`token_byte_lengths` is
exact. Id 0 is ``<|endoftext|>``; ids 1..256 are the 256 single bytes; merges follow.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from study.data.corpus import EOT

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# The tokenizer trains on the first 4 MB of training text, whatever the corpus size or limit, so
# every limit of one corpus shares token ids. Measured on ../shared/data/tinystories (vocab 4096,
# held-out bytes per token): 1 MB 3.950, 2 MB 3.969, 4 MB 3.982, 8 MB 3.983, 16 MB 3.985, while
# training took 1.3 s at 4 MB and 7-10 s at 8-16 MB: past 4 MB more text buys under 0.1%.
TOKENIZER_SAMPLE_BYTES = 4_000_000
# Stories per encode call: large enough for the parallel encoder, small enough that the
# per-token Encoding objects of one batch stay small (a few MB).
ENCODE_BATCH = 2048
MIN_VOCAB = 257  # 256 bytes + <|endoftext|>
MAX_VOCAB = 2**32 - 1  # ids must fit uint32


def token_dtype(vocab_size: int) -> np.dtype:
    """Little-endian uint16 when every id fits in it, else uint32 (the cache files' layout)."""
    return np.dtype("<u2" if vocab_size <= 2**16 else "<u4")


def tokenizer_sample(stories: Iterable[str]) -> list[str]:
    """The leading stories of ``stories`` up to TOKENIZER_SAMPLE_BYTES of UTF-8 (at least one)."""
    sample: list[str] = []
    size = 0
    for story in stories:
        sample.append(story)
        size += len(story.encode("utf-8"))
        if size >= TOKENIZER_SAMPLE_BYTES:
            break
    return sample


def train_bpe(sample: Sequence[str], *, vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE with ``<|endoftext|>`` as id 0 on ``sample`` (see
    :func:`tokenizer_sample`). A small sample may yield fewer than ``vocab_size`` ids.
    Deterministic for equal input.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    start = time.perf_counter()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sample, trainer=trainer, length=len(sample))
    log.info(
        "trained BPE: %d ids (asked %d) on %d stories, %.1f M chars, in %.1fs",
        tokenizer.get_vocab_size(),
        vocab_size,
        len(sample),
        sum(map(len, sample)) / 1e6,
        time.perf_counter() - start,
    )
    return tokenizer


def encode_batch(
    tokenizer: Tokenizer, stories: Sequence[str], *, eot_id: int, dtype: np.dtype
) -> np.ndarray:
    """Encode a batch of stories (ENCODE_BATCH or so) into one 1-D array, each story followed
    by ``eot_id``.

    ``<|endoftext|>`` written inside a story is encoded as plain text: only real story
    boundaries become ``eot_id``.
    """
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    was_special = tokenizer.encode_special_tokens
    tokenizer.encode_special_tokens = True
    try:
        ids = [enc.ids for enc in encode(list(stories), add_special_tokens=False)]
    finally:
        tokenizer.encode_special_tokens = was_special
    for story_ids in ids:
        story_ids.append(eot_id)
    count = sum(map(len, ids))
    return np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=count)


def token_byte_lengths(tokenizer: Tokenizer, *, vocab_size: int, eot_id: int) -> np.ndarray:
    """int64 [vocab_size]: UTF-8 bytes each id decodes to; ``eot_id`` counts 1 (the boundary).

    Ids the tokenizer does not hold (when it learned fewer than ``vocab_size``) count 0.
    """
    alphabet = _byte_alphabet()
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for token, idx in tokenizer.get_vocab(with_added_tokens=True).items():
        if idx == eot_id:
            continue
        if not set(token) <= alphabet:
            raise ValueError(f"token {token!r} (id {idx}) is not byte-level; cannot count bytes")
        lengths[idx] = len(token)  # byte-level: one character per byte
    lengths[eot_id] = 1
    return lengths


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` (no end-of-text appended)."""
    return list(tokenizer.encode(text, add_special_tokens=False).ids)


def decode(tokenizer: Tokenizer, ids: Iterable[int] | np.ndarray) -> str:
    """Text of ``ids``; ``<|endoftext|>`` appears as itself."""
    as_list = ids.tolist() if isinstance(ids, np.ndarray) else [int(i) for i in ids]
    return tokenizer.decode(as_list, skip_special_tokens=False)


@functools.cache
def _byte_alphabet() -> frozenset[str]:
    from tokenizers import pre_tokenizers

    return frozenset(pre_tokenizers.ByteLevel.alphabet())
