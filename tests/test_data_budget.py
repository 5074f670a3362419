"""``max_stories`` auto: sized to the budget and device, never beyond the corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
from datastories import make_stories, write_text

from study.data import budget, build, hub, online, resolve_max_stories, tokens
from study.errors import UsageError

TINYSTORIES = {"train_stories": 2_119_719, "train_bytes": 1_911_420_483}


def test_a_faster_device_takes_more_stories() -> None:
    cpu, mps, cuda = (
        budget.auto_max_stories(budget=300.0, device=d, cores=2, **TINYSTORIES)
        for d in ("cpu", "mps", "cuda")
    )
    assert cpu < mps < cuda
    # More cores, a longer budget: more stories; past the corpus: the corpus.
    assert budget.auto_max_stories(budget=300.0, device="cpu", cores=16, **TINYSTORIES) > cpu
    assert budget.auto_max_stories(budget=3000.0, device="cpu", cores=2, **TINYSTORIES) > cpu
    assert cuda == TINYSTORIES["train_stories"]


def test_the_rule_in_numbers() -> None:
    # 2 cores x 5e4 tok/s x 300 s / 4 epochs = 7.5 M tokens x 4 bytes / 901.7 bytes per story.
    assert budget.auto_max_stories(budget=300.0, device="cpu", cores=2, **TINYSTORIES) == 33_270
    # A short budget still takes the floor...
    assert (
        budget.auto_max_stories(budget=5.0, device="cpu", cores=2, **TINYSTORIES)
        == budget.AUTO_MIN_STORIES
    )
    # ...but never more than the corpus has.
    for device in ("cpu", "mps", "cuda"):
        for seconds in (1.0, 60.0, 300.0, 3600.0):
            for stories in (1, 500, 30_000, 10**7):
                got = budget.auto_max_stories(
                    budget=seconds,
                    device=device,
                    cores=2,
                    train_stories=stories,
                    train_bytes=stories * 800,
                )
                assert 1 <= got <= stories


def test_an_unknown_device_is_an_error() -> None:
    with pytest.raises(ValueError, match="no peak tokens/s for device 'tpu'"):
        budget.peak_tokens_per_second("tpu")


def test_every_peak_says_where_it_comes_from() -> None:
    for peak in budget.PEAK_TOKENS_PER_SECOND.values():
        assert peak.tokens_per_second > 0 and len(peak.source) > 20


def test_resolve_on_the_hub_needs_no_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("counted a dataset whose size is known")

    monkeypatch.setattr(build, "count_training_stories", fail)
    # A hub that answers (this machine has no route to it, which would choose the sample).
    monkeypatch.setattr(online, "hub_reachable", lambda **_: True)
    monkeypatch.setattr(tokens, "_CHOICES", {})
    for var in online.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    assert hub.HUB_DATASET in hub.KNOWN_TRAIN_SIZE
    assert resolve_max_stories(None, max_stories="auto", budget=300.0, device="cuda") == 2_119_719
    cpu = resolve_max_stories(None, max_stories="auto", budget=300.0, device="cpu")
    assert cpu is not None and budget.AUTO_MIN_STORIES <= cpu < 2_119_719


def test_resolve_counts_a_local_corpus_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text(tmp_path / "train.txt", make_stories(300))
    write_text(tmp_path / "valid.txt", make_stories(5, seed=1))
    got = resolve_max_stories(
        str(tmp_path), max_stories="auto", budget=300.0, device="cuda", cache_dir=tmp_path / "k"
    )
    assert got == 300
    assert (
        resolve_max_stories(
            str(tmp_path), max_stories="auto", budget=1.0, device="cpu", cache_dir=tmp_path / "k"
        )
        == 300
    )  # the floor, capped

    def fail(*args: object) -> None:
        raise AssertionError("counted again")

    monkeypatch.setattr(build, "count_training_stories", fail)
    assert (
        resolve_max_stories(
            str(tmp_path), max_stories="auto", budget=60.0, device="cuda", cache_dir=tmp_path / "k"
        )
        == 300
    )
    assert resolve_max_stories(str(tmp_path), max_stories=7, budget=None, device="cpu") == 7
    assert resolve_max_stories(str(tmp_path), max_stories=None, budget=None, device="cpu") is None
    with pytest.raises(UsageError, match="positive integer or auto"):
        resolve_max_stories(str(tmp_path), max_stories="all", budget=None, device="cpu")


def test_hash_split_corpus_counts_only_training_stories(tmp_path: Path) -> None:
    stories = [f"Story {i}: a frog jumped." for i in range(3000)]
    write_text(tmp_path / "c.txt", stories)
    got = resolve_max_stories(
        str(tmp_path / "c.txt"),
        max_stories="auto",
        budget=300.0,
        device="cuda",
        cache_dir=tmp_path / "k",
    )
    from study.data import corpus

    assert got == sum(not corpus.held_out(s) for s in stories)
