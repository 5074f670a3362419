"""The hub path, tested on a local ``datasets`` dataset (no network here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datastories import VOCAB, make_stories, read_splits, stripped, write_corpus

from study.data import decode, hub, load_tokens
from study.errors import UsageError


def _local_hub_dataset(root: Path) -> Path:
    """A folder ``datasets.load_dataset(path, streaming=True)`` reads as train/validation."""
    write_corpus(root / "train.jsonl", make_stories(40))
    write_corpus(root / "validation.jsonl", make_stories(8, seed=7))
    return root


def test_hub_loader_streams_a_local_dataset(tmp_path: Path) -> None:
    root = _local_hub_dataset(tmp_path / "ds")
    train, valid = read_splits(hub.HubCorpus(str(root)), max_stories=5)
    assert train == stripped(make_stories(5))
    assert valid == stripped(make_stories(5, seed=7))
    assert read_splits(hub.HubCorpus(str(root)), max_stories=None) == (
        stripped(make_stories(40)),
        stripped(make_stories(8, seed=7)),
    )
    with pytest.raises(UsageError, match=r"cannot load dataset .*\[nope\].*Bad split"):
        read_splits(hub.HubCorpus(str(root), valid_split="nope"), max_stories=5)
    with pytest.raises(UsageError, match=r"rows need a string 'story' field"):
        read_splits(hub.HubCorpus(str(root), text_field="story"), max_stories=5)


def test_load_tokens_without_data_uses_the_hub_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _local_hub_dataset(tmp_path / "ds")
    monkeypatch.setattr(hub, "HUB_DATASET", str(root))
    data = load_tokens(None, vocab_size=VOCAB, cache_dir=tmp_path / "k", max_stories=30)
    assert data.source.startswith(f"hub: {root}")
    assert data.fingerprint == hub.HubCorpus(str(root)).fingerprint()
    assert np.count_nonzero(data.train == data.eot_id) == 30
    assert np.count_nonzero(data.valid == data.eot_id) == 8
    assert decode(data.tokenizer, data.valid).startswith(make_stories(1, seed=7)[0].strip())
    # auto counts an unknown dataset's stories by streaming it: never more than it has.
    whole = load_tokens(
        None, vocab_size=VOCAB, cache_dir=tmp_path / "k", budget=300.0, device="cuda"
    )
    assert whole.max_stories == 40
    assert np.count_nonzero(whole.train == whole.eot_id) == 40


def test_fingerprint_covers_name_splits_and_field() -> None:
    base = hub.HubCorpus("a/b")
    others = [
        hub.HubCorpus("a/c"),
        hub.HubCorpus("a/b", train_split="t"),
        hub.HubCorpus("a/b", valid_split="v"),
        hub.HubCorpus("a/b", text_field="story"),
    ]
    assert len({base.fingerprint(), *(o.fingerprint() for o in others)}) == 5
    assert base.fingerprint() == hub.HubCorpus("a/b").fingerprint()
