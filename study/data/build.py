"""Building the cache from a streamed corpus: the tokenizer, the token files, the corpus size.

Nothing here holds the corpus: stories stream from the source, are encoded ENCODE_BATCH at a
time and appended to the split's file, so memory stays at one batch plus the tokenizer whatever
the corpus size. The tokenizer trains on a bounded prefix (``bpe.TOKENIZER_SAMPLE_BYTES``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.data import bpe, cache
from study.data.corpus import EOT, Source

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)


def train_tokenizer(source: Source, *, vocab_size: int) -> Tokenizer:
    """A BPE trained on the first TOKENIZER_SAMPLE_BYTES of the source's training stories (read
    without a limit, so every limit of a corpus gets the same tokenizer)."""
    stories = source.stories(max_stories=None)
    try:
        sample = bpe.tokenizer_sample(story for split, story in stories if split == "train")
    finally:
        stories.close()  # stop reading (and close the files) at the sample's end
    return bpe.train_bpe(sample, vocab_size=vocab_size)


def eot_id(tokenizer: Tokenizer) -> int:
    found = tokenizer.token_to_id(EOT)
    if found is None:  # load_tokenizer and train_bpe both guarantee it
        raise RuntimeError(f"tokenizer has no {EOT} token")
    return int(found)


def build_arrays(
    source: Source,
    manifest: Path,
    *,
    tokenizer: Tokenizer,
    max_stories: int | None,
    vocab_size: int,
    meta: dict[str, Any],
) -> dict[str, int]:
    """Encode the source's stories (at most ``max_stories`` for training) into the token files of
    ``manifest``, batch by batch. Returns tokens per split.

    Raises:
        UsageError: from the source (unreadable, empty split); nothing is published then.
        OSError: the cache folder cannot be written.
    """
    start = time.perf_counter()
    eot, dtype = eot_id(tokenizer), bpe.token_dtype(vocab_size)

    def fill(files: dict[str, cache.SplitFile]) -> None:
        batches: dict[str, list[str]] = {split: [] for split in files}
        for split, story in source.stories(max_stories=max_stories):
            batch = batches[split]
            batch.append(story)
            if len(batch) >= bpe.ENCODE_BATCH:
                files[split].append(bpe.encode_batch(tokenizer, batch, eot_id=eot, dtype=dtype))
                batch.clear()
        for split, batch in batches.items():
            if batch:
                files[split].append(bpe.encode_batch(tokenizer, batch, eot_id=eot, dtype=dtype))

    tokens = cache.write_arrays(manifest, fill, dtype=dtype, meta=meta)
    log.info(
        "encoded %d training and %d held-out tokens in %.1fs",
        tokens["train"],
        tokens["valid"],
        time.perf_counter() - start,
    )
    return tokens


def count_training_stories(source: Source) -> tuple[int, int]:
    """(stories, UTF-8 bytes) of the source's training split, read whole without a limit."""
    start = time.perf_counter()
    stories = size = 0
    for split, story in source.stories(max_stories=None):
        if split == "train":
            stories += 1
            size += len(story.encode("utf-8"))
    log.info(
        "counted %d training stories (%.1f MB) in %.1fs",
        stories,
        size / 1e6,
        time.perf_counter() - start,
    )
    return stories, size
