"""Corpus readers, byte-level BPE and the token cache (study.data)."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import lzma
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from study.data import TokenData, bpe, cache, corpus, decode, default_cache_dir, encode, load_tokens
from study.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
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
    body = "".join(f"{s}\n{corpus.EOT}\n" for s in stories)
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix)
    if opener:
        with opener(path, "wt", encoding="utf-8") as f:
            f.write(body)
    else:
        path.write_text(body, encoding="utf-8")
    return path


def write_corpus(path: Path, stories: list[str]) -> Path:
    """Write ``stories`` in the format ``path``'s suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"text": stories, "id": list(range(len(stories)))}), path)
    elif ".jsonl" in path.name:
        body = "".join(json.dumps({"text": s, "n": i}) + "\n" for i, s in enumerate(stories))
        opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix)
        if opener:
            with opener(path, "wt", encoding="utf-8") as f:
                f.write(body)
        else:
            path.write_text(body, encoding="utf-8")
    else:
        write_text(path, stories)
    return path


def stripped(stories: list[str]) -> tuple[str, ...]:
    return tuple(s.strip() for s in stories)


# ------------------------------------------------------------------------------------- corpus


@pytest.mark.parametrize(
    "suffix", [".txt", ".txt.xz", ".txt.gz", ".jsonl", ".jsonl.gz", ".jsonl.xz", ".parquet"]
)
def test_each_format_round_trips_stories(tmp_path: Path, suffix: str) -> None:
    train, valid = make_stories(30), make_stories(5, seed=1)
    write_corpus(tmp_path / f"train{suffix}", train)
    write_corpus(tmp_path / f"valid{suffix}", valid)
    read = corpus.find_local_corpus(str(tmp_path / f"train{suffix}")).read(max_stories=1000)
    assert read.train == stripped(train)
    assert read.valid == stripped(valid)


def test_text_stories_keep_inner_lines_and_skip_empty_ones(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    path.write_text(
        f"{corpus.EOT}\n  first\n\nstill first  \n{corpus.EOT}\n\n{corpus.EOT}\n"
        f"not a separator: {corpus.EOT}\r\nsecond\r\n{corpus.EOT}",
        encoding="utf-8",
    )
    stories = list(corpus._file_stories(path))
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
        "train.txt.xz", "notes.txt",
    }


def test_folder_with_hub_style_split_names(tmp_path: Path) -> None:
    write_corpus(tmp_path / "data" / "train-00000-of-00002.parquet", make_stories(4))
    write_corpus(tmp_path / "data" / "train-00001-of-00002.parquet", make_stories(4, seed=2))
    write_corpus(tmp_path / "data" / "validation-00000-of-00001.parquet", make_stories(2, seed=3))
    write_corpus(tmp_path / "data" / "test-00000-of-00001.parquet", make_stories(2, seed=4))
    (tmp_path / ".hidden.txt").write_text("hidden story\n")
    local = corpus.find_local_corpus(str(tmp_path))
    assert [p.name for p in local.train_files] == [
        "train-00000-of-00002.parquet", "train-00001-of-00002.parquet",
    ]
    assert [p.name for p in local.valid_files] == ["validation-00000-of-00001.parquet"]
    read = local.read(max_stories=100)
    assert read.train == stripped(make_stories(4) + make_stories(4, seed=2))
    assert read.valid == stripped(make_stories(2, seed=3))


def test_without_valid_file_a_hash_slice_is_held_out(tmp_path: Path) -> None:
    stories = [f"Story number {i} about a dog." for i in range(3000)]
    write_text(tmp_path / "stories.txt", stories)
    local = corpus.find_local_corpus(str(tmp_path / "stories.txt"))
    assert local.valid_files == ()
    first = local.read(max_stories=10_000)
    assert first == local.read(max_stories=10_000)
    assert set(first.valid) == {s for s in stories if corpus.held_out(s)}
    assert first.train == tuple(s for s in stories if not corpus.held_out(s))
    assert 0.015 < len(first.valid) / len(stories) < 0.05
    # The slice depends on each story's text, not on its position.
    reordered = corpus.split_held_out(reversed(stories), max_stories=10_000, where="x")
    assert set(reordered.valid) == set(first.valid)


def test_held_out_rule_matches_the_shared_corpus_rule() -> None:
    # SOURCES.md: held out when int(sha256(story).hexdigest()[:8], 16) % 1000 < 30.
    for story in (f"story {i}" for i in range(500)):
        expected = int(hashlib.sha256(story.encode()).hexdigest()[:8], 16) % 1000 < 30
        assert corpus.held_out(story) == expected


def test_tiny_corpus_still_holds_one_story_out() -> None:
    split = corpus.split_held_out(["one story", "another story"], max_stories=10, where="x")
    assert len(split.train) == 1 and len(split.valid) == 1
    assert set(split.train + split.valid) == {"one story", "another story"}


def test_max_stories_caps_training_stories(tmp_path: Path) -> None:
    write_text(tmp_path / "train.txt", make_stories(50))
    write_text(tmp_path / "valid.txt", make_stories(5, seed=9))
    read = corpus.find_local_corpus(str(tmp_path)).read(max_stories=7)
    assert read.train == stripped(make_stories(7))
    split = corpus.split_held_out(iter(make_stories(3000)), max_stories=200, where="x")
    assert len(split.train) == 200 and split.valid


def test_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    a = write_text(tmp_path / "a" / "c.txt", make_stories(5))
    b = write_text(tmp_path / "b.txt", make_stories(5))
    fp = corpus.find_local_corpus(str(a)).fingerprint(max_stories=10)
    assert fp == corpus.find_local_corpus(str(b)).fingerprint(max_stories=10)
    assert fp != corpus.find_local_corpus(str(b)).fingerprint(max_stories=11)
    write_text(b, make_stories(6))
    assert fp != corpus.find_local_corpus(str(b)).fingerprint(max_stories=10)


# --------------------------------------------------------------------------------- tokenizer


def test_token_bytes_count_the_utf8_bytes_of_decoded_text(tmp_path: Path) -> None:
    stories = make_stories(60)
    write_text(tmp_path / "train.txt", stories)
    write_text(tmp_path / "valid.txt", make_stories(6, seed=1))
    data = load_tokens(str(tmp_path), vocab_size=VOCAB, cache_dir=tmp_path / "cache")
    assert data.token_bytes.dtype == np.int64 and data.token_bytes.shape == (VOCAB,)
    assert int(data.token_bytes[data.train].sum()) == sum(
        len(s.encode("utf-8")) + 1 for s in stripped(stories)
    )
    # Story by story: the ids between boundaries decode to the story, byte for byte.
    bounds = np.flatnonzero(data.train == data.eot_id)
    assert len(bounds) == len(stories)
    start = 0
    for story, end in zip(stripped(stories), bounds, strict=True):
        ids = data.train[start:end]
        assert decode(data.tokenizer, ids) == story
        assert int(data.token_bytes[ids].sum()) == len(story.encode("utf-8"))
        start = end + 1


def test_token_array_layout_and_helpers(tmp_path: Path) -> None:
    stories = make_stories(40)
    write_corpus(tmp_path / "train.jsonl", stories)
    write_corpus(tmp_path / "valid.jsonl", make_stories(4, seed=3))
    data = load_tokens(str(tmp_path), vocab_size=VOCAB, cache_dir=tmp_path / "cache")
    assert isinstance(data, TokenData)
    assert data.train.dtype == np.uint16 and data.train.ndim == 1
    assert data.eot_id == 0 and data.train[-1] == data.eot_id and data.valid[-1] == data.eot_id
    assert data.vocab_size == VOCAB and int(data.train.max()) < VOCAB
    assert np.count_nonzero(data.valid == data.eot_id) == 4
    # A literal <|endoftext|> inside a story is text, not a story boundary.
    assert np.count_nonzero(data.train == data.eot_id) == len(stories)
    expected = "".join(s + corpus.EOT for s in stripped(stories))
    assert decode(data.tokenizer, data.train) == expected
    ids = encode(data.tokenizer, "Once upon a time, Zoë found a café.")
    assert decode(data.tokenizer, ids) == "Once upon a time, Zoë found a café."
    assert "array([" not in repr(data) and "merges" not in repr(data)  # short repr


def test_uint32_ids_for_vocab_above_65536() -> None:
    assert bpe.token_dtype(65_536) == np.uint16
    assert bpe.token_dtype(65_537) == np.uint32


def test_tokenizer_training_is_deterministic(tmp_path: Path) -> None:
    write_text(tmp_path / "c.txt", make_stories(200))
    a = load_tokens(str(tmp_path / "c.txt"), vocab_size=400, cache_dir=tmp_path / "a")
    b = load_tokens(str(tmp_path / "c.txt"), vocab_size=400, cache_dir=tmp_path / "b")
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    assert np.array_equal(a.train, b.train) and np.array_equal(a.valid, b.valid)


# ------------------------------------------------------------------------------------- cache


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STUDY_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("STUDY_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "five-minute-study"


def _forbid_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt although the cache was valid")

    monkeypatch.setattr(bpe, "train_bpe", fail)
    monkeypatch.setattr(bpe, "encode_stories", fail)
    monkeypatch.setattr(corpus.LocalCorpus, "read", fail)


def test_cache_hit_returns_identical_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text(tmp_path / "c.txt.gz", make_stories(80))
    cold = load_tokens(str(tmp_path / "c.txt.gz"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    _forbid_rebuild(monkeypatch)
    warm = load_tokens(str(tmp_path / "c.txt.gz"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    assert np.array_equal(cold.train, warm.train) and cold.train.dtype == warm.train.dtype
    assert np.array_equal(cold.valid, warm.valid)
    assert np.array_equal(cold.token_bytes, warm.token_bytes)
    assert cold.tokenizer.to_str() == warm.tokenizer.to_str()
    assert (cold.fingerprint, cold.source) == (warm.fingerprint, warm.source)


def test_other_vocab_or_corpus_is_a_cache_miss(tmp_path: Path) -> None:
    write_text(tmp_path / "c.txt", make_stories(80))
    a = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    b = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB + 40, cache_dir=tmp_path / "k")
    assert len(b.tokenizer.get_vocab()) > len(a.tokenizer.get_vocab())
    write_text(tmp_path / "c.txt", make_stories(81))
    c = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    assert c.fingerprint != a.fingerprint
    assert np.count_nonzero(c.train == c.eot_id) + np.count_nonzero(c.valid == c.eot_id) == 81


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


DAMAGE = {
    "tokenizer garbage": ("bpe-*.json", lambda p: p.write_bytes(b"\x00not json")),
    "tokenizer truncated": ("bpe-*.json", _truncate),
    "tokenizer bit flip that still parses": (
        "bpe-*.json", lambda p: p.write_text(p.read_text().replace('"Ġ', '"Ĝ', 1)),
    ),
    "train array truncated": ("tokens-*.train.npy", _truncate),
    "valid array bit flip": ("tokens-*.valid.npy", _flip_last_byte),
    "manifest truncated": ("tokens-*[0-9a-f].json", _truncate),
    "manifest missing (killed before it was written)": ("tokens-*[0-9a-f].json", Path.unlink),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_corrupt_cache_file_is_rebuilt(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_text(tmp_path / "c.txt", make_stories(80))
    first = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    pattern, harm = DAMAGE[damage]
    (target,) = (tmp_path / "k").glob(pattern)
    harm(target)
    with caplog.at_level(logging.INFO, logger="study.data"):
        again = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    assert "built in" in caplog.text
    assert np.array_equal(first.train, again.train) and np.array_equal(first.valid, again.valid)
    assert first.tokenizer.to_str() == again.tokenizer.to_str()
    # The rebuild repaired the cache: a third call is a hit.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="study.data"):
        load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    assert "loaded in" in caplog.text and "rebuilding" not in caplog.text


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def half_then_crash(f: object) -> None:
        f.write(b"new but partial")  # type: ignore[attr-defined]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.write_atomic(target, half_then_crash)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


BUILDER = """
import hashlib, sys
from pathlib import Path
from study.data import load_tokens
d = load_tokens(sys.argv[1], vocab_size=int(sys.argv[2]), cache_dir=Path(sys.argv[3]))
print(*(hashlib.sha256(b).hexdigest() for b in
        (d.train.tobytes(), d.valid.tobytes(), d.tokenizer.to_str().encode())))
"""


def test_concurrent_builders_agree(tmp_path: Path) -> None:
    write_text(tmp_path / "c.txt", make_stories(3000))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", BUILDER, str(tmp_path / "c.txt"), "500", str(tmp_path / "k")]
    procs = [
        subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    assert outs[0][0] == outs[1][0] and len(outs[0][0].split()) == 3
    assert not [p.name for p in (tmp_path / "k").iterdir() if p.name.endswith(".tmp")]
    in_process = load_tokens(str(tmp_path / "c.txt"), vocab_size=500, cache_dir=tmp_path / "k")
    assert hashlib.sha256(in_process.train.tobytes()).hexdigest() == outs[0][0].split()[0]


# -------------------------------------------------------------------------------- bad input


def _bad_inputs(tmp: Path) -> dict[str, tuple[str, dict[str, object], str]]:
    """name -> (data path, load_tokens kwargs, regex the message must match)."""
    good = write_text(tmp / "good.txt", make_stories(20))
    (tmp / "empty.txt").write_text("")
    (tmp / "blank.txt").write_text(f"\n  \n{corpus.EOT}\n\n{corpus.EOT}\n")
    (tmp / "one.txt").write_text("A single story.\n")
    (tmp / "latin1.txt").write_bytes("Zoë went home.".encode("latin-1"))
    xz = lzma.compress("\n".join(make_stories(200)).encode())
    (tmp / "truncated.txt.xz").write_bytes(xz[: len(xz) // 2])
    (tmp / "garbage.txt.xz").write_bytes(b"this is not xz data at all" * 10)
    gz = gzip.compress("\n".join(make_stories(200)).encode())
    (tmp / "truncated.txt.gz").write_bytes(gz[: len(gz) // 2])
    write_corpus(tmp / "whole.parquet", make_stories(50))
    raw = (tmp / "whole.parquet").read_bytes()
    (tmp / "truncated.parquet").write_bytes(raw[: len(raw) // 2])
    (tmp / "garbage.parquet").write_bytes(b"PAR1 garbage")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a story"]}), tmp / "nocolumn.parquet")
    (tmp / "badjson.jsonl").write_text('{"text": "fine"}\n{"text": unquoted}\n')
    (tmp / "notext.jsonl").write_text('{"text": "fine"}\n{"story": "wrong key"}\n')
    (tmp / "nofiles").mkdir()
    (tmp / "nofiles" / "readme.md").write_text("# nothing here")
    (tmp / "onlyvalid").mkdir()
    write_text(tmp / "onlyvalid" / "valid.txt", make_stories(3))
    (tmp / "emptyvalid").mkdir()
    write_text(tmp / "emptyvalid" / "train.txt", make_stories(3))
    (tmp / "emptyvalid" / "valid.txt").write_text("")
    (tmp / "corpus.csv").write_text("text\nhello\n")
    ok = str(good)
    return {
        "missing path": (str(tmp / "nope.txt"), {}, r"does not exist: .*nope\.txt"),
        "empty file": (str(tmp / "empty.txt"), {}, r"empty corpus: .*no stories"),
        "blank stories only": (str(tmp / "blank.txt"), {}, r"empty corpus: .*no stories"),
        "single story": (str(tmp / "one.txt"), {}, r"only 1 story"),
        "not utf-8": (str(tmp / "latin1.txt"), {}, r"latin1\.txt: not UTF-8"),
        "truncated xz": (str(tmp / "truncated.txt.xz"), {}, r"truncated\.txt\.xz: truncated"),
        "garbage xz": (str(tmp / "garbage.txt.xz"), {}, r"cannot read .*garbage\.txt\.xz"),
        "truncated gz": (str(tmp / "truncated.txt.gz"), {}, r"truncated\.txt\.gz: truncated"),
        "truncated parquet": (str(tmp / "truncated.parquet"), {}, r"cannot read .*\.parquet"),
        "garbage parquet": (str(tmp / "garbage.parquet"), {}, r"cannot read .*garbage\.parquet"),
        "parquet without text": (str(tmp / "nocolumn.parquet"), {}, r"no \"text\" column"),
        "bad jsonl": (str(tmp / "badjson.jsonl"), {}, r"badjson\.jsonl: line 2 is not JSON"),
        "jsonl without text": (str(tmp / "notext.jsonl"), {}, r"line 2 is not an object with"),
        "folder of nothing": (str(tmp / "nofiles"), {}, r"no supported data files .*nofiles"),
        "only held-out files": (str(tmp / "onlyvalid"), {}, r"no training files"),
        "empty held-out file": (str(tmp / "emptyvalid"), {}, r"no stories in the held-out"),
        "unsupported suffix": (str(tmp / "corpus.csv"), {}, r"unsupported data file .*\.csv"),
        "vocab too small": (ok, {"vocab_size": 256}, r"vocab_size must be at least 257"),
        "vocab beyond uint32": (ok, {"vocab_size": 2**32}, r"vocab_size .* fit uint32"),
        "vocab not an int": (ok, {"vocab_size": 4096.0}, r"vocab_size must be an integer"),
        "vocab a bool": (ok, {"vocab_size": True}, r"vocab_size must be an integer"),
        "max_stories zero": (ok, {"max_stories": 0}, r"max_stories must be at least 1"),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize(
    "name",
    [
        "missing path", "empty file", "blank stories only", "single story", "not utf-8",
        "truncated xz", "garbage xz", "truncated gz", "truncated parquet", "garbage parquet",
        "parquet without text", "bad jsonl", "jsonl without text", "folder of nothing",
        "only held-out files", "empty held-out file", "unsupported suffix", "vocab too small",
        "vocab beyond uint32", "vocab not an int", "vocab a bool", "max_stories zero",
    ],
)
def test_bad_input_raises_usage_error(
    name: str, bad_inputs: dict[str, tuple], tmp_path: Path
) -> None:
    data, kwargs, pattern = bad_inputs[name]
    with pytest.raises(UsageError, match=pattern) as info:
        load_tokens(data, cache_dir=tmp_path / "k", **{"vocab_size": VOCAB, **kwargs})
    assert "\n" not in str(info.value)
    # Nothing was cached for a corpus that failed.
    assert not list((tmp_path / "k").glob("tokens-*"))


# -------------------------------------------------------------------------------------- hub


def _local_hub_dataset(root: Path) -> Path:
    """A folder ``datasets.load_dataset(path, streaming=True)`` reads as train/validation."""
    write_corpus(root / "train.jsonl", make_stories(40))
    write_corpus(root / "validation.jsonl", make_stories(8, seed=7))
    return root


def test_hub_loader_streams_a_local_dataset(tmp_path: Path) -> None:
    root = _local_hub_dataset(tmp_path / "ds")
    read = corpus.load_hub_corpus(str(root), max_stories=5)
    assert read.train == stripped(make_stories(5))
    assert read.valid == stripped(make_stories(5, seed=7))
    with pytest.raises(UsageError, match=r"cannot load dataset .*\[nope\].*Bad split"):
        corpus.load_hub_corpus(str(root), max_stories=5, valid_split="nope")
    with pytest.raises(UsageError, match=r"rows need a string 'story' field"):
        corpus.load_hub_corpus(str(root), max_stories=5, text_field="story")


def test_load_tokens_without_data_uses_the_hub_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _local_hub_dataset(tmp_path / "ds")
    monkeypatch.setattr(corpus, "HUB_DATASET", str(root))
    data = load_tokens(None, vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=30)
    assert data.source.startswith(f"hub: {root}")
    assert data.fingerprint == corpus.hub_fingerprint(str(root), max_stories=30)
    assert np.count_nonzero(data.train == data.eot_id) == 30
    assert np.count_nonzero(data.valid == data.eot_id) == 8
    assert decode(data.tokenizer, data.valid).startswith(make_stories(1, seed=7)[0].strip())


def test_importing_and_local_loading_need_neither_datasets_nor_pyarrow(tmp_path: Path) -> None:
    write_text(tmp_path / "c.txt", make_stories(50))
    script = (
        "import sys; from pathlib import Path; import study.data\n"
        "heavy = ('datasets', 'pyarrow', 'pandas', 'tokenizers')\n"
        "before = {m for m in heavy if m in sys.modules}\n"
        f"study.data.load_tokens({str(tmp_path / 'c.txt')!r}, vocab_size={VOCAB}, "
        f"cache_dir=Path({str(tmp_path / 'k')!r}))\n"
        "after = {m for m in heavy[:3] if m in sys.modules}\n"
        "print(sorted(before), sorted(after))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.split() == ["[]", "[]"]


# ------------------------------------------------------------------------------- real corpus


def test_real_corpus(tinystories: Path, cache_dir: Path) -> None:
    data = load_tokens(str(tinystories), vocab_size=4096, cache_dir=cache_dir)
    assert data.train.dtype == np.uint16
    assert data.source.endswith("(train: train.txt.xz; held out: valid.txt.xz)")
    assert np.count_nonzero(data.train == data.eot_id) == 27_283  # stories, per SOURCES.md
    assert np.count_nonzero(data.valid == data.eot_id) == 814
    assert 5_000_000 < data.train.size < 5_700_000
    # SOURCES.md: 21,660,471 bytes, of which each story's "\n<|endoftext|>\n" is 15; EOT counts 1.
    assert int(data.token_bytes[data.train].sum()) == 21_660_471 - 27_283 * 14
    assert int(data.token_bytes[data.valid].sum()) == 633_876 - 814 * 14
    assert decode(data.tokenizer, data.train[:12]).startswith("Once upon a time there was")
