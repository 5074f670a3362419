"""Stories in: read a local corpus or a hub dataset into training and held-out stories.

A story is one document. Text files hold stories separated by a line holding exactly
``<|endoftext|>``; ``.jsonl`` files hold one story per line in a ``"text"`` field; ``.parquet``
files hold one story per row in a ``"text"`` column. Stories are stripped of leading and trailing
whitespace and empty ones are dropped.

Held-out split, in order of preference: files named ``valid.*`` / ``validation.*`` (beside a
``train.*`` file, or anywhere in a folder), the hub dataset's own validation split, else a
deterministic slice of about 3% chosen by story hash (the rule ../shared/data/tinystories used).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import lzma
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path

from study.errors import UsageError

log = logging.getLogger(__name__)

EOT = "<|endoftext|>"
HUB_DATASET = "roneneldan/TinyStories"
# Longest first, so "x.txt.xz" is read as .txt.xz, not .xz.
SUFFIXES = (".jsonl.xz", ".jsonl.gz", ".txt.xz", ".txt.gz", ".parquet", ".jsonl", ".txt")
HELD_OUT_PER_MILLE = 30
# Part of every fingerprint: bump it when the reading rules change, so old caches are not reused.
READER_VERSION = 1

_VALID_NAME = re.compile(r"^(valid|validation)([-_.].*)?$")  # valid, validation-00000-of-00001
_TRAIN_NAME = re.compile(r"^train([-_.].*)?$")
_TEST_NAME = re.compile(r"^test([-_.].*)?$")
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, UnicodeDecodeError, ValueError)


@dataclass(frozen=True)
class Corpus:
    """Stories, in corpus order. Both splits are non-empty."""

    train: tuple[str, ...]
    valid: tuple[str, ...]


@dataclass(frozen=True)
class LocalCorpus:
    """Where a local corpus lies; found without reading it (see :func:`find_local_corpus`)."""

    given: str
    train_files: tuple[Path, ...]
    valid_files: tuple[Path, ...]  # empty: hold out a hash slice of the training stories

    def describe(self) -> str:
        held_out = (
            ", ".join(p.name for p in self.valid_files)
            if self.valid_files
            else f"{HELD_OUT_PER_MILLE / 10:g}% of stories by hash"
        )
        train = (
            self.train_files[0].name if len(self.train_files) == 1
            else f"{len(self.train_files)} files"
        )
        return f"local: {self.given} (train: {train}; held out: {held_out})"

    def fingerprint(self, *, max_stories: int) -> str:
        """sha256 over the files' bytes (as stored, so compressed files hash fast) and roles."""
        digest = hashlib.sha256(
            f"local corpus r{READER_VERSION} max_stories={max_stories}\n".encode()
        )
        for role, files in (("train", self.train_files), ("valid", self.valid_files)):
            for path in files:
                try:
                    with path.open("rb") as f:
                        digest.update(f"{role} {_suffix(path)} {path.stat().st_size}\n".encode())
                        while chunk := f.read(1 << 20):
                            digest.update(chunk)
                except OSError as exc:
                    raise UsageError(f"cannot read {path}: {_one_line(exc)}") from None
        return digest.hexdigest()

    def read(self, *, max_stories: int) -> Corpus:
        """Read the stories: at most ``max_stories`` training stories, in file order.

        Raises:
            UsageError: a file is unreadable or corrupt, or a split holds no stories.
        """
        stories = chain.from_iterable(_file_stories(p) for p in self.train_files)
        if not self.valid_files:
            return split_held_out(stories, max_stories=max_stories, where=self.given)
        train = tuple(islice(stories, max_stories))
        valid = tuple(chain.from_iterable(_file_stories(p) for p in self.valid_files))
        if not train:
            raise UsageError(f"empty corpus: no stories in the training files of {self.given}")
        if not valid:
            names = ", ".join(str(p) for p in self.valid_files)
            raise UsageError(f"empty corpus: no stories in the held-out file(s) {names}")
        return Corpus(train=train, valid=valid)


def find_local_corpus(data: str) -> LocalCorpus:
    """Resolve ``data`` (a supported file or a folder of them) to its training and held-out files.

    In a folder, files named ``valid*`` / ``validation*`` are held out, files named ``test*`` are
    ignored, and every other supported file (searched recursively, hidden ones skipped) is
    training text. A single file named ``train.*`` takes a ``valid.*`` beside it as held-out.

    Raises:
        UsageError: the path does not exist, has an unsupported type, or the folder holds no
            supported file.
    """
    path = Path(data).expanduser()
    if not path.exists():
        raise UsageError(f"data path does not exist: {data}")
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and _suffix(p)
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
    if not _suffix(path):
        raise UsageError(
            f"unsupported data file {data}: expected one of {', '.join(sorted(SUFFIXES))} "
            f"or a folder of them"
        )
    valid = []
    if _TRAIN_NAME.match(_stem(path)):
        valid = sorted(
            p for p in path.parent.iterdir()
            if p.is_file() and _suffix(p) and _VALID_NAME.match(_stem(p))
        )
    return LocalCorpus(given=data, train_files=(path,), valid_files=tuple(valid))


def held_out(story: str) -> bool:
    """True for the ~3% of stories the hash rule holds out (stable across runs and machines)."""
    return _story_hash(story) % 1000 < HELD_OUT_PER_MILLE


def split_held_out(stories: Iterable[str], *, max_stories: int, where: str) -> Corpus:
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
        if len(train) >= max_stories:
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


# ---------------------------------------------------------------------------------- the hub


def hub_fingerprint(
    name: str, *, max_stories: int, train_split: str = "train",
    valid_split: str = "validation", text_field: str = "text",
) -> str:
    """A hub dataset cannot be hashed without downloading it: name, splits and limit stand in."""
    key = f"hub r{READER_VERSION} {name} {train_split} {valid_split} {text_field} {max_stories}"
    return hashlib.sha256(key.encode()).hexdigest()


def load_hub_corpus(
    name: str, *, max_stories: int, train_split: str = "train",
    valid_split: str = "validation", text_field: str = "text",
) -> Corpus:
    """Stream the first ``max_stories`` stories of each split of a ``datasets`` dataset.

    ``name`` is anything ``datasets.load_dataset`` accepts: a hub id such as
    ``roneneldan/TinyStories`` or a local folder of data files with train/validation splits.
    Streaming means only the stories taken are downloaded, never the whole set.

    Raises:
        UsageError: the dataset or a split cannot be loaded (offline, unknown name), rows lack
            the text field, or a split holds no stories.
    """
    train = _hub_stories(name, split=train_split, limit=max_stories, text_field=text_field)
    valid = _hub_stories(name, split=valid_split, limit=max_stories, text_field=text_field)
    return Corpus(train=train, valid=valid)


def _hub_stories(name: str, *, split: str, limit: int, text_field: str) -> tuple[str, ...]:
    import datasets  # only this path needs it, and it is slow to import

    log.info("streaming up to %d stories of %s [%s]", limit, name, split)
    stories: list[str] = []
    try:
        for row in datasets.load_dataset(name, split=split, streaming=True):
            text = row.get(text_field)
            if not isinstance(text, str):
                raise UsageError(
                    f"dataset {name} [{split}]: rows need a string {text_field!r} field"
                )
            if story := text.strip():
                stories.append(story)
                if len(stories) >= limit:
                    break
    except (OSError, ValueError) as exc:  # ConnectionError, DatasetNotFoundError, bad split
        raise UsageError(
            f"cannot load dataset {name} [{split}]: {_one_line(exc)} (pass a local corpus path "
            f"as data to work offline)"
        ) from None
    if not stories:
        raise UsageError(f"empty corpus: dataset {name} [{split}] holds no stories")
    return tuple(stories)


# ------------------------------------------------------------------------------ file readers


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def _stem(path: Path) -> str:
    suffix = _suffix(path) or ""
    return path.name[: len(path.name) - len(suffix)].lower()


def _story_hash(story: str) -> int:
    # The first 32 bits of sha256, as in ../shared/data/tinystories/SOURCES.md.
    return int.from_bytes(hashlib.sha256(story.encode("utf-8")).digest()[:4], "big")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _file_stories(path: Path) -> Iterator[str]:
    suffix = _suffix(path)
    try:
        if suffix == ".parquet":
            yield from _parquet_stories(path)
            return
        with _open_text(path, suffix or "") as lines:
            if suffix and suffix.startswith(".jsonl"):
                yield from _jsonl_stories(path, lines)
            else:
                yield from _text_stories(lines)
    except _READ_ERRORS as exc:
        if isinstance(exc, UnicodeDecodeError):
            reason = f"not UTF-8 text (bad byte at offset {exc.start})"
        elif isinstance(exc, EOFError):
            reason = f"truncated ({_one_line(exc)})"
        else:
            reason = _one_line(exc)
        raise UsageError(f"cannot read {path}: {reason}") from None


def _open_text(path: Path, suffix: str) -> io.TextIOWrapper:
    raw: io.BufferedIOBase
    if suffix.endswith(".xz"):
        raw = lzma.open(path, "rb")
    elif suffix.endswith(".gz"):
        raw = gzip.open(path, "rb")
    else:
        raw = path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8")


def _text_stories(lines: Iterable[str]) -> Iterator[str]:
    separator = EOT + "\n"
    story: list[str] = []
    for line in lines:
        if line == separator or line == EOT:
            if text := "".join(story).strip():
                yield text
            story.clear()
        else:
            story.append(line)
    if text := "".join(story).strip():
        yield text


def _jsonl_stories(path: Path, lines: Iterable[str]) -> Iterator[str]:
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"cannot read {path}: line {lineno} is not JSON ({exc.msg})") from None
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise UsageError(
                f"cannot read {path}: line {lineno} is not an object with a string \"text\" field"
            )
        if story := text.strip():
            yield story


def _parquet_stories(path: Path) -> Iterator[str]:
    import pyarrow as pa  # only parquet corpora need it
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if "text" not in schema.names:
        raise UsageError(f"cannot read {path}: no \"text\" column (columns: {schema.names})")
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UsageError(f"cannot read {path}: column \"text\" holds {kind}, not strings")
    for batch in parquet.iter_batches(columns=["text"], batch_size=8192):
        for text in batch.column(0).to_pylist():
            if text and (story := text.strip()):
                yield story
