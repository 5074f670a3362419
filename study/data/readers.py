"""Corpus files in, stories out: one streaming reader per format, in bounded memory.

The reading rule: a file of any size streams, and no one story (or line) may exceed
MAX_STORY_CHARS, so a file with no separators (a sparse or binary file, a text never split into
stories) is refused with one line naming the file and the limit instead of being read whole.
A NUL character is refused as binary data: UTF-8 text corpora hold none. Parquet is read in
batches of rows; a row group (which the reader decompresses whole) is capped at
MAX_ROW_GROUP_BYTES. Formats: see :mod:`study.data.corpus`.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from study.errors import UsageError, first_line

EOT = "<|endoftext|>"
# Longest first, so "x.txt.xz" is read as .txt.xz, not .xz.
SUFFIXES = (".jsonl.xz", ".jsonl.gz", ".txt.xz", ".txt.gz", ".parquet", ".jsonl", ".txt")
# The longest TinyStories story is under 10k characters; 8 Mi characters is a long novel's worth.
MAX_STORY_CHARS = 8 * 2**20
# A parquet row group is decompressed whole by the reader: refuse text columns larger than this.
MAX_ROW_GROUP_BYTES = 1 << 30
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error, UnicodeDecodeError, ValueError)


def suffix(path: Path) -> str | None:
    """The supported suffix ``path`` ends with (case-insensitive), or None."""
    name = path.name.lower()
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def file_stories(path: Path) -> Iterator[str]:
    """Stream the stripped, non-empty stories of one corpus file.

    Raises:
        UsageError: the file is unreadable, corrupt, not UTF-8 text, or breaks the limits.
    """
    kind = suffix(path)
    try:
        if kind == ".parquet":
            yield from _parquet_stories(path)
            return
        with _open_text(path, kind or "") as f:
            lines = _bounded_lines(path, f)
            if kind and kind.startswith(".jsonl"):
                yield from _jsonl_stories(path, lines)
            else:
                yield from _text_stories(path, lines)
    except _READ_ERRORS as exc:
        if isinstance(exc, UnicodeDecodeError):
            reason = f"not UTF-8 text (bad byte at offset {exc.start})"
        elif isinstance(exc, EOFError):
            reason = f"truncated ({first_line(exc)})"
        else:
            reason = first_line(exc)
        raise UsageError(f"cannot read {path}: {reason}") from None


def _open_text(path: Path, kind: str) -> io.TextIOWrapper:
    raw: io.BufferedIOBase
    if kind.endswith(".xz"):
        raw = lzma.open(path, "rb")
    elif kind.endswith(".gz"):
        raw = gzip.open(path, "rb")
    else:
        raw = path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8")


def _bounded_lines(path: Path, f: io.TextIOWrapper) -> Iterator[str]:
    """The lines of ``f``, each read with a cap of MAX_STORY_CHARS, so memory stays bounded
    whatever the file holds.

    Raises:
        UsageError: a line over the cap, or a NUL character (binary data, e.g. a sparse file).
    """
    lineno = 0
    while line := f.readline(MAX_STORY_CHARS + 1):
        lineno += 1
        if "\0" in line:
            raise UsageError(
                f"cannot read {path}: binary data (a NUL byte on line {lineno}), not UTF-8 text"
            )
        if len(line) > MAX_STORY_CHARS:
            raise _too_long(path, f"line {lineno}")
        yield line


def _too_long(path: Path, what: str) -> UsageError:
    return UsageError(
        f"cannot read {path}: {what} is longer than {MAX_STORY_CHARS:,} characters, the most "
        f"one story may hold (separate stories with a line holding exactly {EOT})"
    )


def _text_stories(path: Path, lines: Iterable[str]) -> Iterator[str]:
    separator = EOT + "\n"
    story: list[str] = []
    size = 0
    for lineno, line in enumerate(lines, 1):
        if line == separator or line == EOT:
            if text := "".join(story).strip():
                yield text
            story.clear()
            size = 0
        else:
            story.append(line)
            size += len(line)
            if size > MAX_STORY_CHARS:
                raise _too_long(path, f"the story ending on line {lineno}")
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
                f'cannot read {path}: line {lineno} is not an object with a string "text" field'
            )
        if story := text.strip():
            yield story


def _parquet_stories(path: Path) -> Iterator[str]:
    import pyarrow as pa  # only parquet corpora need it
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if "text" not in schema.names:
        raise UsageError(f'cannot read {path}: no "text" column (columns: {schema.names})')
    kind = schema.field("text").type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise UsageError(f'cannot read {path}: column "text" holds {kind}, not strings')
    meta = parquet.metadata
    for group in range(meta.num_row_groups):
        chunks = (meta.row_group(group).column(i) for i in range(meta.num_columns))
        size = sum(c.total_uncompressed_size for c in chunks if c.path_in_schema == "text")
        if size > MAX_ROW_GROUP_BYTES:
            raise UsageError(
                f"cannot read {path}: row group {group} holds {size:,} bytes of text, over the "
                f"{MAX_ROW_GROUP_BYTES:,} one group may hold (write it with smaller row groups)"
            )
    for batch in parquet.iter_batches(columns=["text"], batch_size=8192):
        for text in batch.column(0).to_pylist():
            if text and (story := text.strip()):
                yield story
