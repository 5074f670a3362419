"""The token cache: hits, misses, damage, concurrent builders, and memory bounded by a batch."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datastories import VOCAB, make_stories, write_text

from study.data import bpe, cache, corpus, default_cache_dir, load_tokens

REPO = Path(__file__).resolve().parents[1]


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
    monkeypatch.setattr(bpe, "encode_batch", fail)
    monkeypatch.setattr(corpus.LocalCorpus, "stories", fail)


def test_cache_hit_returns_identical_arrays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text(tmp_path / "c.txt.gz", make_stories(80))
    cold = load_tokens(
        str(tmp_path / "c.txt.gz"), vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=60
    )
    _forbid_rebuild(monkeypatch)
    warm = load_tokens(
        str(tmp_path / "c.txt.gz"), vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=60
    )
    assert isinstance(warm.train, np.memmap) and not warm.train.flags.writeable
    assert np.array_equal(cold.train, warm.train) and cold.train.dtype == warm.train.dtype
    assert np.array_equal(cold.valid, warm.valid)
    assert np.array_equal(cold.token_bytes, warm.token_bytes)
    assert cold.tokenizer.to_str() == warm.tokenizer.to_str()
    assert (cold.fingerprint, cold.source) == (warm.fingerprint, warm.source)
    assert warm.unique_tokens == warm.train.size and warm.max_stories == 60


def test_other_vocab_corpus_or_limit_is_a_cache_miss(tmp_path: Path) -> None:
    write_text(tmp_path / "c.txt", make_stories(80))
    a = load_tokens(
        str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=None
    )
    b = load_tokens(
        str(tmp_path / "c.txt"), vocab_size=VOCAB + 40, cache_dir=tmp_path / "k", max_stories=None
    )
    assert len(b.tokenizer.get_vocab()) > len(a.tokenizer.get_vocab())
    fewer = load_tokens(
        str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=40
    )
    assert np.count_nonzero(fewer.train == fewer.eot_id) == 40
    assert fewer.train.size < a.train.size
    assert len(list((tmp_path / "k").glob("tokens-*-c2.json"))) == 3
    write_text(tmp_path / "c.txt", make_stories(81))
    c = load_tokens(
        str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=None
    )
    assert c.fingerprint != a.fingerprint
    assert np.count_nonzero(c.train == c.eot_id) + np.count_nonzero(c.valid == c.eot_id) == 81


def test_another_tokenizer_sample_size_is_a_cache_miss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text(tmp_path / "c.txt", make_stories(300))
    a = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    monkeypatch.setattr(bpe, "TOKENIZER_SAMPLE_BYTES", 2000)
    b = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    assert len(list((tmp_path / "k").glob("bpe-*.json"))) == 2
    assert a.tokenizer.to_str() != b.tokenizer.to_str()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_byte(path: Path, where: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[where] ^= 0xFF
    path.write_bytes(bytes(raw))


DAMAGE = {
    "tokenizer garbage": ("bpe-*.json", lambda p: p.write_bytes(b"\x00not json")),
    "tokenizer truncated": ("bpe-*.json", _truncate),
    "tokenizer bit flip that still parses": (
        "bpe-*.json",
        lambda p: p.write_text(p.read_text().replace('"Ġ', '"Ĝ', 1)),
    ),
    "train file truncated": ("tokens-*.train.bin", _truncate),
    "train file bit flip in the middle": (
        "tokens-*.train.bin",
        lambda p: _flip_byte(p, p.stat().st_size // 2),
    ),
    "valid file bit flip": ("tokens-*.valid.bin", lambda p: _flip_byte(p, -1)),
    "manifest truncated": ("tokens-*-c2.json", _truncate),
    "manifest missing (killed before it was written)": ("tokens-*-c2.json", Path.unlink),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_corrupt_cache_file_is_rebuilt(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_text(tmp_path / "c.txt", make_stories(80))
    first = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    # Copies: the damage below rewrites files in place, under the maps (the cache itself only
    # ever replaces files, so a map a trial holds stays valid).
    train, valid = np.array(first.train), np.array(first.valid)
    pattern, harm = DAMAGE[damage]
    (target,) = (tmp_path / "k").glob(pattern)
    harm(target)
    with caplog.at_level(logging.INFO, logger="study.data"):
        again = load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    assert "built in" in caplog.text
    assert np.array_equal(train, again.train) and np.array_equal(valid, again.valid)
    assert first.tokenizer.to_str() == again.tokenizer.to_str()
    # The rebuild repaired the cache: a third call is a hit.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="study.data"):
        load_tokens(str(tmp_path / "c.txt"), vocab_size=VOCAB, cache_dir=tmp_path / "k")
    assert "loaded in" in caplog.text and "rebuilding" not in caplog.text


def test_a_failing_build_publishes_nothing_and_keeps_old_files(tmp_path: Path) -> None:
    manifest = tmp_path / "tokens-x.json"
    old = manifest.with_suffix(".train.bin")
    old.write_bytes(b"old")

    def half_then_crash(files: dict[str, cache.SplitFile]) -> None:
        files["train"].append(np.arange(10, dtype=np.uint16))
        files["valid"].append(np.arange(3, dtype=np.uint16))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.write_arrays(manifest, half_then_crash, dtype=np.dtype("<u2"), meta={})
    assert old.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokens-x.train.bin"]


BUILDER = """
import hashlib, sys
from pathlib import Path
from study.data import load_tokens
d = load_tokens(sys.argv[1], vocab_size=int(sys.argv[2]), cache_dir=Path(sys.argv[3]),
                max_stories=None)
print(*(hashlib.sha256(b).hexdigest() for b in
        (d.train.tobytes(), d.valid.tobytes(), d.tokenizer.to_str().encode())))
"""


@pytest.mark.slow
def test_concurrent_builders_agree(tmp_path: Path) -> None:
    write_text(tmp_path / "c.txt", make_stories(3000))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", BUILDER, str(tmp_path / "c.txt"), "500", str(tmp_path / "k")]
    procs = [
        subprocess.Popen(
            args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for proc, (_, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err
    assert outs[0][0] == outs[1][0] and len(outs[0][0].split()) == 3
    assert not [p.name for p in (tmp_path / "k").iterdir() if p.name.endswith(".tmp")]
    in_process = load_tokens(
        str(tmp_path / "c.txt"), vocab_size=500, cache_dir=tmp_path / "k", max_stories=None
    )
    assert hashlib.sha256(in_process.train.tobytes()).hexdigest() == outs[0][0].split()[0]
