"""Byte-level BPE: exact byte counts, the token layout, ids, the bounded training sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from datastories import VOCAB, make_stories, stripped, write_corpus, write_text

from study.data import TokenData, bpe, corpus, decode, encode, load_tokens


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
        start = int(end) + 1


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


def test_tokenizer_sample_is_a_bounded_prefix() -> None:
    stories = [f"story {i} " + "x" * 990 for i in range(10_000)]  # about 1 kB each
    sample = bpe.tokenizer_sample(iter(stories))
    assert sample == stories[: len(sample)]
    size = sum(len(s.encode()) for s in sample)
    assert bpe.TOKENIZER_SAMPLE_BYTES <= size < bpe.TOKENIZER_SAMPLE_BYTES + 1000
    assert bpe.tokenizer_sample(iter(stories[:3])) == stories[:3]


def test_every_limit_of_a_corpus_shares_one_tokenizer(tmp_path: Path) -> None:
    write_text(tmp_path / "train.txt", make_stories(300))
    write_text(tmp_path / "valid.txt", make_stories(10, seed=4))
    small = load_tokens(str(tmp_path), vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=20)
    whole = load_tokens(str(tmp_path), vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=None)
    assert small.tokenizer.to_str() == whole.tokenizer.to_str()
    assert len(list((tmp_path / "k").glob("bpe-*.json"))) == 1
    assert np.count_nonzero(small.train == small.eot_id) == 20
    # The first 20 stories' tokens are the same under both limits.
    assert np.array_equal(small.train, whole.train[: small.train.size])
    assert np.array_equal(small.valid, whole.valid)


def test_encode_batch_appends_boundaries_and_keeps_special_text() -> None:
    from tokenizers import Tokenizer

    tok = bpe.train_bpe(make_stories(50), vocab_size=VOCAB)
    assert isinstance(tok, Tokenizer)
    ids = bpe.encode_batch(tok, ["a <|endoftext|> b", "c"], eot_id=0, dtype=bpe.token_dtype(VOCAB))
    assert np.count_nonzero(ids == 0) == 2 and ids[-1] == 0
    assert decode(tok, ids) == "a <|endoftext|> b<|endoftext|>c<|endoftext|>"
    assert tok.encode_special_tokens is False  # restored
