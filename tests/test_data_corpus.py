"""Local corpus readers: formats, splits, the held-out hash rule, limits, fingerprints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from datastories import make_stories, read_splits, stripped, write_corpus, write_text

from study.data import corpus, readers
from study.errors import UsageError


@pytest.mark.parametrize(
    "suffix", [".txt", ".txt.xz", ".txt.gz", ".jsonl", ".jsonl.gz", ".jsonl.xz", ".parquet"]
)
def test_each_format_round_trips_stories(tmp_path: Path, suffix: str) -> None:
    train, valid = make_stories(30), make_stories(5, seed=1)
    write_corpus(tmp_path / f"train{suffix}", train)
    write_corpus(tmp_path / f"valid{suffix}", valid)
    source = corpus.find_local_corpus(str(tmp_path / f"train{suffix}"))
    assert read_splits(source, max_stories=1000) == (stripped(train), stripped(valid))


def test_text_stories_keep_inner_lines_and_skip_empty_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text(
        f"{corpus.EOT}\n  first\n\nstill first  \n{corpus.EOT}\n\n{corpus.EOT}\n"
        f"not a separator: {corpus.EOT}\r\nsecond\r\n{corpus.EOT}",
        encoding="utf-8",
    )
    stories = list(readers.file_stories(path))
    assert stories == ["first\n\nstill first", f"not a separator: {corpus.EOT}\nsecond"]


def test_valid_file_beside_train_file_is_held_out(tmp_path: Path) -> None:
    write_text(tmp_path / "train.txt.xz", make_stories(10))
    write_text(tmp_path / "valid.txt.xz", make_stories(3, seed=5))
    write_text(tmp_path / "notes.txt", ["unrelated"])
    for given in (tmp_path, tmp_path / "train.txt.xz"):
        local = corpus.find_local_corpus(str(given))
        assert [p.name for p in local.valid_files] == ["valid.txt.xz"]
        assert "held out: valid.txt.xz" in local.describe()
    assert {p.name for p in corpus.find_local_corpus(str(tmp_path)).train_files} == {
        "train.txt.xz",
        "notes.txt",
    }


def test_folder_with_hub_style_split_names(tmp_path: Path) -> None:
    write_corpus(tmp_path / "data" / "train-00000-of-00002.parquet", make_stories(4))
    write_corpus(tmp_path / "data" / "train-00001-of-00002.parquet", make_stories(4, seed=2))
    write_corpus(tmp_path / "data" / "validation-00000-of-00001.parquet", make_stories(2, seed=3))
    write_corpus(tmp_path / "data" / "test-00000-of-00001.parquet", make_stories(2, seed=4))
    (tmp_path / ".hidden.txt").write_text("hidden story\n")
    local = corpus.find_local_corpus(str(tmp_path))
    assert [p.name for p in local.train_files] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
    ]
    assert [p.name for p in local.valid_files] == ["validation-00000-of-00001.parquet"]
    train, valid = read_splits(local, max_stories=100)
    assert train == stripped(make_stories(4) + make_stories(4, seed=2))
    assert valid == stripped(make_stories(2, seed=3))


def test_without_valid_file_a_hash_slice_is_held_out(tmp_path: Path) -> None:
    stories = [f"Story number {i} about a dog." for i in range(3000)]
    write_text(tmp_path / "stories.txt", stories)
    local = corpus.find_local_corpus(str(tmp_path / "stories.txt"))
    assert local.valid_files == ()
    train, valid = read_splits(local, max_stories=10_000)
    assert (train, valid) == read_splits(local, max_stories=None)
    assert set(valid) == {s for s in stories if corpus.held_out(s)}
    assert train == tuple(s for s in stories if not corpus.held_out(s))
    assert 0.015 < len(valid) / len(stories) < 0.05
    # The slice depends on each story's text, not on its position.
    reordered = corpus.split_held_out(reversed(stories), max_stories=10_000, where="x")
    assert set(reordered.valid) == set(valid)


def test_streamed_and_in_memory_hash_split_agree() -> None:
    stories = [f"Tale {i}: a cat sat." for i in range(5000)]
    for limit in (None, 50, 2500, 4000):
        memory = corpus.split_held_out(stories, max_stories=limit, where="x")
        pairs = list(corpus.split_stream(iter(stories), max_stories=limit, where="x"))
        assert tuple(s for split, s in pairs if split == "train") == memory.train
        assert tuple(s for split, s in pairs if split == "valid") == memory.valid


def test_large_corpus_without_held_out_story_is_refused() -> None:
    kept = (s for i in range(10**6) if not corpus.held_out(s := f"story {i}"))
    with pytest.raises(UsageError, match=r"none of 1500 stories fell in the held-out .*valid"):
        list(corpus.split_stream(kept, max_stories=1500, where="x"))


def test_held_out_rule_matches_the_shared_corpus_rule() -> None:
    # SOURCES.md: held out when int(sha256(story).hexdigest()[:8], 16) % 1000 < 30.
    for story in (f"story {i}" for i in range(500)):
        expected = int(hashlib.sha256(story.encode()).hexdigest()[:8], 16) % 1000 < 30
        assert corpus.held_out(story) == expected


def test_tiny_corpus_still_holds_one_story_out() -> None:
    split = corpus.split_held_out(["one story", "another story"], max_stories=10, where="x")
    assert len(split.train) == 1 and len(split.valid) == 1
    assert set(split.train + split.valid) == {"one story", "another story"}
    pairs = list(corpus.split_stream(["one story", "another story"], max_stories=10, where="x"))
    assert sorted(split for split, _ in pairs) == ["train", "valid"]


def test_max_stories_caps_training_stories(tmp_path: Path) -> None:
    write_text(tmp_path / "train.txt", make_stories(50))
    write_text(tmp_path / "valid.txt", make_stories(5, seed=9))
    train, valid = read_splits(corpus.find_local_corpus(str(tmp_path)), max_stories=7)
    assert train == stripped(make_stories(7)) and valid == stripped(make_stories(5, seed=9))
    split = corpus.split_held_out(iter(make_stories(3000)), max_stories=200, where="x")
    assert len(split.train) == 200 and split.valid
    streamed = list(corpus.split_stream(iter(make_stories(3000)), max_stories=2000, where="x"))
    assert sum(split == "train" for split, _ in streamed) == 2000


def test_stream_stops_reading_at_the_limit(tmp_path: Path) -> None:
    stories = make_stories(5000)
    read = 0

    def counted() -> object:
        nonlocal read
        for story in stories:
            read += 1
            yield story

    pairs = corpus.split_stream(counted(), max_stories=1200, where="x")  # type: ignore[arg-type]
    assert sum(split == "train" for split, _ in pairs) == 1200
    assert read < 1300  # what was read, not the corpus


def test_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    a = write_text(tmp_path / "a" / "c.txt", make_stories(5))
    b = write_text(tmp_path / "b.txt", make_stories(5))
    fp = corpus.find_local_corpus(str(a)).fingerprint()
    assert fp == corpus.find_local_corpus(str(b)).fingerprint()
    write_text(b, make_stories(6))
    assert fp != corpus.find_local_corpus(str(b)).fingerprint()
    # The role of a file is part of the content: the same bytes held out are another corpus.
    write_text(tmp_path / "train.txt", make_stories(5))
    write_text(tmp_path / "valid.txt", make_stories(2))
    assert corpus.find_local_corpus(str(tmp_path / "train.txt")).fingerprint() != fp
