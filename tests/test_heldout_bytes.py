"""The held-out text by bytes (``eval_bytes``): every vocabulary of a study scores the same
whole held-out stories, so bits per byte are over identical bytes, while the default protocol
(``eval_tokens`` tokens of the trial's own vocabulary) stays as it was."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datastories import make_stories, write_text

from study.config import ModelConfig, TrainConfig
from study.data import decode, load_tokens
from study.errors import UsageError
from study.models import build_model
from study.training.evaluate import eval_windows, evaluate, heldout_set, span_windows
from study.training.trainer import train

EOT = 9
BYTES = np.array([1, 1, 2, 3, 1, 2, 1, 1, 1, 1], dtype=np.int64)  # id 9 (end-of-text) counts 1
TOKENS = np.array([1, 2, 3, EOT, 4, 5, EOT, 6, EOT, 7, 8, 2, EOT], dtype=np.uint16)
# stories: [1 2 3] 6 bytes + 1, [4 5] 3 + 1, [6] 1 + 1, [7 8 2] 4 + 1: ends at 7, 11, 13, 18 bytes


@pytest.mark.parametrize(("n_bytes", "stop"), [(1, 4), (7, 4), (8, 7), (12, 9), (13, 9), (99, 13)])
def test_span_is_whole_stories_scored_from_their_first_token(n_bytes: int, stop: int) -> None:
    windows, tail = span_windows(TOKENS, token_bytes=BYTES, eot_id=EOT, n_bytes=n_bytes, seq_len=3)
    ids = np.concatenate([windows[:, :-1].ravel(), *([] if tail is None else [tail[0, :-1]])])
    targets = np.concatenate([windows[:, 1:].ravel(), *([] if tail is None else [tail[0, 1:]])])
    assert ids[0] == EOT  # the story boundary before the first story
    assert np.array_equal(targets, TOKENS[:stop])  # every token of the stories, each once
    assert np.array_equal(ids[1:], TOKENS[: stop - 1])  # each target's input is the one before
    assert windows.shape == (stop // 3, 4)
    assert (tail is None) == (stop % 3 == 0)
    if tail is not None:
        assert tail.shape == (1, stop % 3 + 1)


def test_span_of_a_split_without_a_whole_story_is_refused() -> None:
    with pytest.raises(UsageError, match="no whole story"):
        span_windows(TOKENS[:3], token_bytes=BYTES, eot_id=EOT, n_bytes=4, seq_len=2)


def test_without_eval_bytes_the_windows_are_todays() -> None:
    valid = np.arange(1000, dtype=np.uint16) % 50
    held = heldout_set(
        valid, seq_len=16, eval_tokens=200, eval_bytes=None, token_bytes=BYTES, eot_id=EOT
    )
    assert held.tail is None
    assert np.array_equal(held.windows, eval_windows(valid, n_tokens=200, seq_len=16))


def test_evaluate_scores_the_tail_with_the_windows() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, d_model=16, n_head=2, seq_len=4, vocab_size=300))
    windows, tail = span_windows(TOKENS, token_bytes=BYTES, eot_id=EOT, n_bytes=99, seq_len=4)
    assert tail is not None and tail.shape == (1, 2)  # 13 targets: 3 windows of 4 and 1
    w, t = torch.from_numpy(windows), torch.from_numpy(tail)
    token_bytes = torch.ones(300, dtype=torch.int64)
    token_bytes[:10] = torch.from_numpy(BYTES)
    loss, bpb = evaluate(
        model, w, token_bytes=token_bytes, batch_size=2, amp=contextlib.nullcontext, tail=t
    )
    with torch.no_grad():
        nll = model.nll_sum(w[:, :-1], w[:, 1:]).double() + model.nll_sum(t[:, :-1], t[:, 1:])
    assert loss == pytest.approx(nll.item() / 13)
    assert bpb == pytest.approx(nll.item() / (math.log(2) * 18))  # the four stories' bytes
    # Without a tail, exactly today's arithmetic: batches summed in float64, bytes of targets.
    loss, bpb = evaluate(
        model, w, token_bytes=token_bytes, batch_size=2, amp=contextlib.nullcontext
    )
    with torch.no_grad():
        total = torch.zeros((), dtype=torch.float64)
        for i in range(0, 3, 2):
            total += model.nll_sum(w[i : i + 2, :-1], w[i : i + 2, 1:]).double()
    n_bytes = token_bytes[w[:, 1:]].sum().item()
    assert (loss, bpb) == (total.item() / 12, total.item() / (math.log(2) * n_bytes))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_text(folder / "train.txt", make_stories(300))
    write_text(folder / "valid.txt", make_stories(60, seed=5))
    return folder


def held_text(folder: Path, cache: Path, vocab: int, eval_bytes: int | None) -> tuple[str, int]:
    """The held-out targets of ``vocab`` as text, and their bytes."""
    data = load_tokens(str(folder), vocab_size=vocab, cache_dir=cache, max_stories=None)
    held = heldout_set(
        data.valid,
        seq_len=32,
        eval_tokens=512,
        eval_bytes=eval_bytes,
        token_bytes=data.token_bytes,
        eot_id=data.eot_id,
    )
    targets = [held.windows[:, 1:].ravel()]
    if held.tail is not None:
        targets.append(held.tail[0, 1:])
    ids = np.concatenate(targets)
    return decode(data.tokenizer, ids.tolist()), int(data.token_bytes[ids].sum())


def test_two_vocabularies_score_the_same_text_by_bytes(corpus: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    small, large = (held_text(corpus, cache, v, eval_bytes=1500) for v in (300, 420))
    assert small == large  # the same stories, byte for byte
    assert 1500 <= small[1] < 1500 + 200  # whole stories: no more than one story beyond
    # Today's protocol: the same number of tokens, so two vocabularies score different text.
    by_tokens = [held_text(corpus, cache, v, eval_bytes=None)[1] for v in (300, 420)]
    assert by_tokens[0] != by_tokens[1]


def test_trials_of_two_vocabularies_record_the_same_bytes(corpus: Path, tmp_path: Path) -> None:
    results = {}
    for vocab in (300, 420):
        config = TrainConfig(
            model=ModelConfig(n_layer=1, d_model=16, n_head=2, seq_len=32, vocab_size=vocab),
            data=str(corpus),
            device="cpu",
            batch_size=4,
            steps=2,
            eval_bytes=1500,
            curve_points=1,
            sample_tokens=0,
            max_stories=300,
        )
        results[vocab] = train(config, cache_dir=tmp_path / "cache", out=None)
    a, b = results[300], results[420]
    assert a.eval_bytes == b.eval_bytes and a.eval_bytes is not None and a.eval_bytes >= 1500
    assert a.eval_tokens != b.eval_tokens  # the same text in more tokens at the smaller vocabulary
    assert a.eval_tokens is not None and b.eval_tokens is not None and a.eval_tokens > b.eval_tokens


def test_eval_bytes_is_validated_and_reaches_the_config() -> None:
    from study.train import build_parser, config_from_args

    with pytest.raises(UsageError, match="eval_bytes must be an integer >= 1, got 0"):
        TrainConfig(eval_bytes=0).validate()
    config = config_from_args(
        build_parser().parse_args(["--eval-bytes", "4096", "--data", "sample"])
    )
    assert config.eval_bytes == 4096 and TrainConfig().eval_bytes is None
