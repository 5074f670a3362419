"""Little corpora for the study.data tests: varied stories written in every supported format."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import numpy as np

from study.data import corpus

VOCAB = 320  # small: trains in milliseconds on the toy corpora below


def make_stories(n: int, *, seed: int = 0) -> list[str]:
    """Varied little stories: accents, emoji, inner blank lines and a literal <|endoftext|>."""
    rng = np.random.default_rng(seed)
    names = ["Ben", "Lily", "Zoë", "Tom", "Mia", "Søren", "Ana"]
    things = ["a red ball", "a shiny stone", "a café", "a big 🐶 dog", "the naïve cat", "a kite"]
    stories = []
    for i in range(n):
        name, thing = rng.choice(names), rng.choice(things)
        story = f"Once upon a time, {name} found {thing}. It was day {i}.\n"
        if i % 3 == 0:
            story += f"\n{name} said, “Wow!” and smiled."
        if i % 7 == 0:
            story += " The sign said <|endoftext|> in the middle of a line."
        stories.append(story)
    return stories


def write_text(path: Path, stories: list[str]) -> Path:
    _write(path, "".join(f"{s}\n{corpus.EOT}\n" for s in stories))
    return path


def _write(path: Path, body: str) -> None:
    """``body`` as UTF-8, compressed as the suffix (.xz, .gz) says."""
    data = body.encode("utf-8")
    if path.suffix == ".xz":
        data = lzma.compress(data)
    elif path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def write_corpus(path: Path, stories: list[str]) -> Path:
    """Write ``stories`` in the format ``path``'s suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": stories, "id": list(range(len(stories)))}), path)
    elif ".jsonl" in path.name:
        _write(path, "".join(json.dumps({"text": s, "n": i}) + "\n" for i, s in enumerate(stories)))
    else:
        write_text(path, stories)
    return path


def stripped(stories: list[str]) -> tuple[str, ...]:
    return tuple(s.strip() for s in stories)


def read_splits(
    source: corpus.Source, *, max_stories: int | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training stories, held-out stories) as the source streams them."""
    train: list[str] = []
    valid: list[str] = []
    for split, story in source.stories(max_stories=max_stories):
        (train if split == "train" else valid).append(story)
    return tuple(train), tuple(valid)
