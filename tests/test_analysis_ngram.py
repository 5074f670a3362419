"""The n-gram baselines: normalised at every position, hand-counted cases, the command's edges."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datastories import make_stories, write_text

from analysis import baseline
from analysis.fits.ngram import fit_ngram
from analysis.views import baseline as views

VOCAB = 7


def _all_candidates(history: np.ndarray, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Each history row repeated once per id, with every id as its target."""
    return np.repeat(history, vocab, axis=0), np.tile(np.arange(vocab), len(history))


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_probabilities_sum_to_one_at_every_position(order: int) -> None:
    rng = np.random.default_rng(order)
    # A skewed stream, so some contexts are frequent, some rare and some never seen.
    train = rng.choice(VOCAB, size=300, p=[0.4, 0.2, 0.15, 0.1, 0.1, 0.05, 0.0])
    model = fit_ngram(train, order=order, vocab_size=VOCAB)
    held = rng.integers(0, VOCAB, size=60)
    k = 4
    padded = np.concatenate([np.full(k, -1), held])
    history = np.stack([padded[i : i + k] for i in range(len(held))])  # starts with -1 rows
    hist, targets = _all_candidates(history, VOCAB)
    p = model.probabilities(hist, targets).reshape(len(held), VOCAB)
    assert (p > 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-12)


def test_hand_counted_bigram() -> None:
    # Unigrams: c(0)=2, c(1)=2, c(2)=1, N=5, 3 types: P1(w) = (c(w) + 3/3) / 8.
    # Bigram contexts: c(0)=2 followed by {1}; c(1)=2 followed by {0, 2}; 2 never a context.
    model = fit_ngram(np.array([0, 1, 0, 1, 2]), order=2, vocab_size=3)
    p1 = {0: 3 / 8, 1: 3 / 8, 2: 2 / 8}
    expected = {
        (0, 0): (0 + 1 * p1[0]) / (2 + 1),
        (0, 1): (2 + 1 * p1[1]) / (2 + 1),  # 19/24
        (0, 2): (0 + 1 * p1[2]) / (2 + 1),
        (1, 0): (1 + 2 * p1[0]) / (2 + 2),  # 7/16
        (1, 2): (1 + 2 * p1[2]) / (2 + 2),  # 3/8
        (2, 0): p1[0],  # unseen context: the unigram
    }
    hist = np.array([[h] for h, _ in expected])
    got = model.probabilities(hist, np.array([w for _, w in expected]))
    np.testing.assert_allclose(got, list(expected.values()), rtol=1e-12)
    assert expected[(0, 1)] == pytest.approx(19 / 24)
    # One window [0, 1, 2, 0]: targets 1 | 0, 2 | 1, 0 | 2 (the first sees only its window).
    nll = model.window_nll(np.array([[0, 1, 2, 0]]))
    assert nll == pytest.approx(-math.log(19 / 24) - math.log(3 / 8) - math.log(3 / 8))
    unigram = model.truncated(1).window_nll(np.array([[0, 1, 2, 0]]))
    assert unigram == pytest.approx(-math.log(3 / 8) - math.log(2 / 8) - math.log(3 / 8))


def test_window_start_uses_shorter_context() -> None:
    train = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    tri = fit_ngram(train, order=3, vocab_size=3)
    # The first target of a window has one id before it: the trigram must score it as the
    # bigram does, not with ids from before the window.
    first = tri.window_nll(np.array([[2, 0]]))
    assert first == pytest.approx(tri.truncated(2).window_nll(np.array([[2, 0]])))


def test_study_protocol_takes_what_most_trials_record() -> None:
    row = {
        "state": "COMPLETE",
        "config.data": "sample",
        "config.max_stories": 100,
        "config.model.vocab_size": 512,
        "config.model.seq_len": 64,
        "config.eval_tokens": 4096,
    }
    other = {**row, "config.model.seq_len": 128}
    failed = {**other, "state": "FAIL"}
    protocol = views.study_protocol(pd.DataFrame([row, row, other, failed, failed]))
    assert protocol == views.Protocol("sample", 100, 512, 64, 4096)


def test_baselines_cached_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_text(corpus / "train.txt", make_stories(300))
    write_text(corpus / "valid.txt", make_stories(40, seed=1))
    protocol = views.Protocol(str(corpus), None, 320, 16, 256)
    first = views.compute_baselines(protocol, orders=(1, 2, 3), cache_dir=tmp_path / "cache")
    assert [s.order for s in first.scores] == [1, 2, 3]
    assert first.targets == 256 and first.scores[1].bpb < first.scores[0].bpb

    def no_scoring(*args: object, **kwargs: object) -> None:
        raise AssertionError("scored again although cached")

    monkeypatch.setattr(views, "score_baselines", no_scoring)
    again = views.compute_baselines(protocol, orders=(1, 2, 3), cache_dir=tmp_path / "cache")
    assert again == first


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "sample", "--study-name", "x"],
        ["--data", "sample", "--max-order", "0"],
        ["--data", "sample", "--seq-len", "0"],
        ["--data", "/no/such/corpus.txt"],
        ["--data", "sample", "--json", "/no/such/folder/out.json"],
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exc:
        baseline.main([*argv, "--cache-dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "c"
    corpus.mkdir()
    write_text(corpus / "train.txt", make_stories(200))
    write_text(corpus / "valid.txt", make_stories(30, seed=2))
    out = tmp_path / "b.json"
    argv = ["--data", str(corpus), "--vocab-size", "320", "--seq-len", "16"]
    baseline.main([*argv, "--eval-tokens", "128", "--max-order", "2", "--json", str(out)])
    payload = json.loads(out.read_text())
    assert [s["order"] for s in payload["scores"]] == [1, 2]
    assert "best: order" in capsys.readouterr().out


def test_byte_protocol_scores_what_a_trial_scores(tmp_path: Path) -> None:
    """With eval_bytes the baseline scores the trial's own held-out stories (windows and the
    shorter last one), in the same bytes and targets; two vocabularies score the same bytes;
    the windows' protocol and its cache file are not touched by it."""
    from study.config import ModelConfig, TrainConfig
    from study.training.trainer import train

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_text(corpus / "train.txt", make_stories(300))
    write_text(corpus / "valid.txt", make_stories(60, seed=5))
    cache = tmp_path / "cache"
    config = TrainConfig(
        model=ModelConfig(n_layer=1, d_model=16, n_head=2, seq_len=32, vocab_size=300),
        data=str(corpus),
        device="cpu",
        batch_size=4,
        steps=2,
        eval_bytes=1500,
        curve_points=1,
        sample_tokens=0,
    )
    trial = train(config, cache_dir=cache, out=None)
    by_bytes = {
        vocab: views.compute_baselines(
            views.Protocol(str(corpus), None, vocab, 32, 65_536, eval_bytes=1500),
            orders=(1, 2),
            cache_dir=cache,
        )
        for vocab in (300, 420)
    }
    assert by_bytes[300].bytes == trial.eval_bytes and by_bytes[300].targets == trial.eval_tokens
    assert by_bytes[420].bytes == trial.eval_bytes and by_bytes[420].targets < trial.eval_tokens
    windows = views.compute_baselines(
        views.Protocol(str(corpus), None, 300, 32, 1024), orders=(1, 2), cache_dir=cache
    )
    assert windows.targets == 1024 and windows.bytes != by_bytes[300].bytes
    assert len(list((cache / "baselines").glob("ngram-*.json"))) == 3  # one file per protocol


def test_study_protocol_reads_eval_bytes() -> None:
    row = {
        "state": "COMPLETE",
        "config.data": "sample",
        "config.max_stories": None,
        "config.model.vocab_size": 1024,
        "config.model.seq_len": 64,
        "config.eval_tokens": 4096,
        "config.eval_bytes": 262_144,
    }
    assert views.study_protocol(pd.DataFrame([row])).eval_bytes == 262_144
    del row["config.eval_bytes"]  # a study from before the byte protocol
    assert views.study_protocol(pd.DataFrame([row])).eval_bytes is None
