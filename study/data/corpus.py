"""Stories in: stream a local corpus as (split, story) pairs, never holding it whole.

A story is one document. Text files hold stories separated by a line holding exactly
``<|endoftext|>``; ``.jsonl`` files hold one story per line in a ``"text"`` field; ``.parquet``
files hold one story per row in a ``"text"`` column. Stories are stripped of leading and trailing
whitespace and empty ones are dropped. Files are read by :mod:`study.data.readers`, in bounded
memory whatever their size.

Held-out split, in order of preference: files named ``valid.*`` / ``validation.*`` (beside a
``train.*`` file, or anywhere in a folder), the hub dataset's own validation split
(:mod:`study.data.hub`), else a deterministic slice of about 3% chosen by story hash (the rule
../shared/data/tinystories used), taken from the stories read until the training limit is met.

Every source (this module's :class:`LocalCorpus`, :class:`study.data.hub.HubCorpus`) offers
``describe()``, ``fingerprint()`` (its content, not the limit) and ``stories(max_stories=...)``:
an iterator of ``("train" | "valid", story)`` that raises :class:`UsageError` on unreadable input
or an empty split when it gets there.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Protocol

from study.data.readers import EOT as EOT  # the separator, named here with the formats
from study.data.readers import SUFFIXES, file_stories, suffix
from study.data.sample import SAMPLE, sample_dir
from study.errors import UsageError, first_line

log = logging.getLogger(__name__)

HELD_OUT_PER_MILLE = 30
# Part of every fingerprint: bump it when the reading rules change, so old caches are not reused.
# 2: the held-out hash slice of a corpus of SMALL_CORPUS stories or more is streamed.
READER_VERSION = 2
# Below this many stories (read before the training limit is met) the corpus is split in memory,
# so a tiny corpus still gets one story on each side; above it the hash rule streams, and an
# empty held-out slice (odds 0.97**1000) is an error.
SMALL_CORPUS = 1000

_VALID_NAME = re.compile(r"^(valid|validation)([-_.].*)?$")  # valid, validation-00000-of-00001
_TRAIN_NAME = re.compile(r"^train([-_.].*)?$")
_TEST_NAME = re.compile(r"^test([-_.].*)?$")

Split = tuple[str, str]  # ("train" | "valid", story)
Splits = Generator[Split, None, None]  # close() stops reading and closes the files


class Source(Protocol):
    """What the token cache needs of a corpus (local files or a hub dataset)."""

    def describe(self, *, max_stories: int | None) -> str: ...

    def fingerprint(self) -> str: ...

    def stories(self, *, max_stories: int | None) -> Splits: ...


@dataclass(frozen=True)
class LocalCorpus:
    """Where a local corpus lies; found without reading it (see :func:`find_local_corpus`)."""

    given: str
    train_files: tuple[Path, ...]
    valid_files: tuple[Path, ...]  # empty: hold out a hash slice of the training stories

    def describe(self, *, max_stories: int | None = None) -> str:
        held_out = (
            ", ".join(p.name for p in self.valid_files)
            if self.valid_files
            else f"{HELD_OUT_PER_MILLE / 10:g}% of stories by hash"
        )
        train = (
            self.train_files[0].name
            if len(self.train_files) == 1
            else f"{len(self.train_files)} files"
        )
        limit = "" if max_stories is None else f", at most {max_stories} stories"
        return f"local: {self.given} (train: {train}{limit}; held out: {held_out})"

    def fingerprint(self) -> str:
        """sha256 over the files' bytes (as stored, so compressed files hash fast) and roles."""
        digest = hashlib.sha256(f"local corpus r{READER_VERSION}\n".encode())
        for role, files in (("train", self.train_files), ("valid", self.valid_files)):
            for path in files:
                try:
                    with path.open("rb") as f:
                        digest.update(f"{role} {suffix(path)} {path.stat().st_size}\n".encode())
                        while chunk := f.read(1 << 20):
                            digest.update(chunk)
                except OSError as exc:
                    raise UsageError(f"cannot read {path}: {first_line(exc)}") from None
        return digest.hexdigest()

    def stories(self, *, max_stories: int | None) -> Splits:
        """Stream ``(split, story)``: at most ``max_stories`` training stories, in file order,
        and the held-out stories (all of the held-out files, or the hash slice of what was read).

        Raises:
            UsageError: a file is unreadable or corrupt, or a split holds no stories.
        """
        stories = chain.from_iterable(file_stories(p) for p in self.train_files)
        if not self.valid_files:
            yield from split_stream(stories, max_stories=max_stories, where=self.given)
            return
        train = 0
        for story in islice(stories, max_stories):
            train += 1
            yield "train", story
        if not train:
            raise UsageError(f"empty corpus: no stories in the training files of {self.given}")
        valid = 0
        for story in chain.from_iterable(file_stories(p) for p in self.valid_files):
            valid += 1
            yield "valid", story
        if not valid:
            names = ", ".join(str(p) for p in self.valid_files)
            raise UsageError(f"empty corpus: no stories in the held-out file(s) {names}")


def find_local_corpus(data: str) -> LocalCorpus:
    """Resolve ``data`` (a supported file or a folder of them) to its training and held-out files.

    ``sample`` names the bundled TinyStories sample (:mod:`study.data.sample`). In a folder,
    files named ``valid*`` / ``validation*`` are held out, files named ``test*`` are
    ignored, and every other supported file (searched recursively, hidden ones skipped) is
    training text. A single file named ``train.*`` takes a ``valid.*`` beside it as held-out.

    Raises:
        UsageError: the path does not exist, has an unsupported type, or the folder holds no
            supported file.
    """
    path = sample_dir() if data == SAMPLE else Path(data).expanduser()
    if not path.exists():
        raise UsageError(f"data path does not exist: {data}")
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and suffix(p)
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise UsageError(
                f"no supported data files ({', '.join(sorted(SUFFIXES))}) in folder {data}"
            )
        valid = [p for p in files if _VALID_NAME.match(_stem(p))]
        tests = [p for p in files if _TEST_NAME.match(_stem(p))]
        if tests:
            log.info("ignoring test split file(s): %s", ", ".join(p.name for p in tests))
        train = [p for p in files if p not in valid and p not in tests]
        if not train:
            raise UsageError(f"folder {data} holds no training files, only held-out or test files")
        return LocalCorpus(given=data, train_files=tuple(train), valid_files=tuple(valid))
    if not path.is_file():  # a FIFO or a device (a link to /dev/zero) would be read for ever
        raise UsageError(f"data path {data} is not a regular file or a folder")
    if not suffix(path):
        raise UsageError(
            f"unsupported data file {data}: expected one of {', '.join(sorted(SUFFIXES))} "
            f"or a folder of them"
        )
    valid = []
    if _TRAIN_NAME.match(_stem(path)):
        valid = sorted(
            p
            for p in path.parent.iterdir()
            if p.is_file() and suffix(p) and _VALID_NAME.match(_stem(p))
        )
    return LocalCorpus(given=data, train_files=(path,), valid_files=tuple(valid))


@dataclass(frozen=True)
class Corpus:
    """Stories of a small corpus split in memory, in corpus order. Both splits are non-empty."""

    train: tuple[str, ...]
    valid: tuple[str, ...]


def held_out(story: str) -> bool:
    """True for the ~3% of stories the hash rule holds out (stable across runs and machines)."""
    return _story_hash(story) % 1000 < HELD_OUT_PER_MILLE


def split_held_out(stories: Iterable[str], *, max_stories: int | None, where: str) -> Corpus:
    """Split stories by :func:`held_out`, stopping once ``max_stories`` are kept for training.

    A tiny corpus whose hash slice comes out empty (or takes everything) still gets one story
    on each side, chosen by hash, so the result does not depend on story order.

    Raises:
        UsageError: fewer than two stories.
    """
    train: list[str] = []
    valid: list[str] = []
    for story in stories:
        (valid if held_out(story) else train).append(story)
        if max_stories is not None and len(train) >= max_stories:
            break
    if len(train) + len(valid) < 2:
        found = "no stories" if not (train or valid) else "only 1 story"
        raise UsageError(
            f"empty corpus: {where} holds {found}; at least 2 are needed to hold one out"
        )
    if not valid:
        valid.append(train.pop(min(range(len(train)), key=lambda i: _story_hash(train[i]))))
    if not train:
        train.append(valid.pop(max(range(len(valid)), key=lambda i: _story_hash(valid[i]))))
    return Corpus(train=tuple(train), valid=tuple(valid))


def split_stream(stories: Iterable[str], *, max_stories: int | None, where: str) -> Splits:
    """Stream the :func:`held_out` split of ``stories`` until ``max_stories`` are kept for
    training. A corpus (or a limit) met within SMALL_CORPUS stories is split in memory by
    :func:`split_held_out`; larger ones stream and hold nothing.

    Raises:
        UsageError: fewer than two stories, or a large corpus with no held-out story.
    """
    stories = iter(stories)
    head = list(islice(stories, SMALL_CORPUS))
    kept = sum(not held_out(s) for s in head)
    if len(head) < SMALL_CORPUS or (max_stories is not None and kept >= max_stories):
        split = split_held_out(head, max_stories=max_stories, where=where)
        yield from (("train", s) for s in split.train)
        yield from (("valid", s) for s in split.valid)
        return
    train = valid = 0
    for story in chain(head, stories):
        if held_out(story):
            valid += 1
            yield "valid", story
        else:
            train += 1
            yield "train", story
            if max_stories is not None and train >= max_stories:
                break
    if not valid:
        raise UsageError(
            f"{where}: none of {train} stories fell in the held-out hash slice (already split? "
            f"put its held-out stories in a valid.* file beside it)"
        )


# ------------------------------------------------------------------------------ names


def _stem(path: Path) -> str:
    kind = suffix(path) or ""
    return path.name[: len(path.name) - len(kind)].lower()


def _story_hash(story: str) -> int:
    # The first 32 bits of sha256, as in ../shared/data/tinystories/SOURCES.md.
    return int.from_bytes(hashlib.sha256(story.encode("utf-8")).digest()[:4], "big")
