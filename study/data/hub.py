"""Stories from a ``datasets`` dataset (by default TinyStories on the Hugging Face hub), streamed.

Streaming means only the stories taken are downloaded, never the whole set. A hub dataset cannot
be hashed without downloading it, so its name, splits and text field stand in for its content
in the fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from study.data.corpus import READER_VERSION, Splits
from study.data.online import quiet_hub
from study.errors import UsageError, first_line

log = logging.getLogger(__name__)

HUB_DATASET = "roneneldan/TinyStories"
# Training stories and UTF-8 bytes of known datasets, from the dataset card's dataset_info
# (roneneldan/TinyStories: train 2,119,719 examples, 1,911,420,483 bytes), so sizing the corpus
# to a budget (study.data.budget) needs no pass over a 1.9 GB download.
KNOWN_TRAIN_SIZE = {"roneneldan/TinyStories": (2_119_719, 1_911_420_483)}

ROW_BATCH = 1000  # rows per read: the quiet context is entered once per batch, not per row


@dataclass(frozen=True)
class HubCorpus:
    """A dataset ``datasets.load_dataset`` accepts: a hub id such as ``roneneldan/TinyStories``
    or a local folder of data files with train/validation splits."""

    name: str
    train_split: str = "train"
    valid_split: str = "validation"
    text_field: str = "text"

    def describe(self, *, max_stories: int | None = None) -> str:
        taken = "all stories" if max_stories is None else f"first {max_stories} stories"
        return f"hub: {self.name} ({taken} of {self.train_split} and {self.valid_split})"

    def fingerprint(self) -> str:
        key = (
            f"hub r{READER_VERSION} {self.name} {self.train_split} {self.valid_split} "
            f"{self.text_field}"
        )
        return hashlib.sha256(key.encode()).hexdigest()

    def stories(self, *, max_stories: int | None) -> Splits:
        """Stream ``(split, story)``: the first ``max_stories`` stories of each split.

        Raises:
            UsageError: the dataset or a split cannot be loaded (offline, unknown name), rows
                lack the text field, or a split holds no stories.
        """
        yield from (("train", s) for s in self._split(self.train_split, max_stories))
        yield from (("valid", s) for s in self._split(self.valid_split, max_stories))

    def _split(self, split: str, limit: int | None) -> Iterator[str]:
        import datasets  # only this path needs it, and it is slow to import (before quiet_hub:
        # its import resets its own logger's level)

        log.info("streaming %s stories of %s [%s]", limit or "all", self.name, split)
        taken = 0
        for texts in self._batches(datasets, split):
            for text in texts:
                if not isinstance(text, str):
                    raise UsageError(
                        f"dataset {self.name} [{split}]: rows need a string "
                        f"{self.text_field!r} field"
                    )
                if story := text.strip():
                    taken += 1
                    yield story
                    if limit is not None and taken >= limit:
                        return
        if not taken:
            raise UsageError(f"empty corpus: dataset {self.name} [{split}] holds no stories")

    def _batches(self, datasets: Any, split: str) -> Iterator[list[object]]:
        """The text field of ROW_BATCH rows at a time, every hub call made quietly.

        Raises:
            UsageError: the dataset or split cannot be loaded or read (one line).
        """
        try:
            with quiet_hub():
                rows = iter(
                    datasets.load_dataset(self.name, split=split, streaming=True).iter(
                        batch_size=ROW_BATCH
                    )
                )
            while True:
                with quiet_hub():
                    batch = next(rows, None)
                if batch is None:
                    return
                yield batch.get(self.text_field) or [None]
        # The client raises its own types (httpx, fsspec, datasets errors) for what are the
        # user's network or dataset problems: all of them become one line, never a traceback.
        except Exception as exc:  # noqa: BLE001
            raise UsageError(
                f"cannot load dataset {self.name} [{split}]: {first_line(exc)} (choose another "
                f"corpus with --data PATH, or --data sample for the bundled one)"
            ) from None
