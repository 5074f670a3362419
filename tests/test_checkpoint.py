"""Kept models: a checkpoint reloads to the trial's held-out loss, is written whole or not at all,
the --keep policy bounds the files; --steps runs are exact re-runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from study.config import ModelConfig, TrainConfig
from study.kept import checkpoint
from study.kept.model import score, tokens_of_text
from study.training.setup import load_config_tokens
from study.training.trainer import train


def tiny(data: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        model=ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=512, seq_len=64),
        budget=30.0,
        steps=3,
        data=str(data),
        device="cpu",
        batch_size=8,
        eval_tokens=2048,
        curve_points=3,
        sample_tokens=4,
        max_stories=2000,
    )
    return base.replace(**changes)


def test_kept_checkpoint_reloads_to_the_recorded_loss(
    tinystories: Path, cache_dir: Path, tmp_path: Path
) -> None:
    config = tiny(tinystories)
    stem = tmp_path / "ck" / "trial-00000"
    result = train(config, cache_dir=cache_dir, out=None, checkpoint=stem)
    assert sorted(p.name for p in stem.parent.iterdir()) == [
        "trial-00000.json",
        "trial-00000.safetensors",
    ]
    kept = checkpoint.load(stem)
    assert kept.config == config
    assert kept.meta["val_loss"] == result.val_loss
    data = checkpoint.load_tokens_of(kept, cache_dir=cache_dir)
    loss, bpb, targets = score(kept, data.valid, data=data)
    assert targets == result.eval_tokens
    assert math.isclose(loss, result.val_loss, rel_tol=1e-5)
    assert math.isclose(bpb, result.val_bpb, rel_tol=1e-5)
    # The held-out split read back from its file, as study.evaluate --data reads it.
    ids = tokens_of_text(tinystories / "valid.txt.xz", data=data)
    assert np.array_equal(np.asarray(ids)[: 4 * 65], np.asarray(data.valid)[: 4 * 65])
    _, bpb_file, _ = score(kept, ids, data=data)
    assert math.isclose(bpb_file, result.val_bpb, rel_tol=1e-5)


def test_steps_twice_give_identical_losses(tinystories: Path, cache_dir: Path) -> None:
    config = tiny(tinystories)
    first = train(config, cache_dir=cache_dir, out=None)
    second = train(config, cache_dir=cache_dir, out=None)
    assert first.steps == second.steps == 3
    assert first.val_loss == second.val_loss
    assert [p["train_loss"] for p in first.curve] == [p["train_loss"] for p in second.curve]
    assert len(first.curve) == 3
    assert first.tokens_per_second > 0  # a 3-step run measures its rate (it was 0)
    other = train(config.replace(seed=1), cache_dir=cache_dir, out=None)
    assert other.val_loss != first.val_loss  # the comparison above can fail


@pytest.mark.parametrize("which", [".safetensors", ".json"])
def test_a_failed_write_leaves_no_half_file(
    tinystories: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    from study.models import build_model

    config = tiny(tinystories)
    data = load_config_tokens(config, cache_dir=cache_dir)
    model = build_model(config.model)
    stem = tmp_path / "trial-00001"
    monkeypatch.setenv(checkpoint.FAULT_ENV, which)
    with pytest.raises(OSError, match="simulated failure"):
        checkpoint.save(stem, model, config=config, data=data, metrics={})
    left = sorted(p.name for p in tmp_path.iterdir())
    # The weights go first: a failed JSON leaves whole weights and no JSON, so no checkpoint.
    assert left == ([] if which == ".safetensors" else ["trial-00001.safetensors"])
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(Exception, match="no checkpoint"):
        checkpoint.load(stem)


def _fake(root: Path, numbers: list[int]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        for suffix in (".safetensors", ".json"):
            checkpoint.trial_stem(root, n).with_suffix(suffix).write_text("{}")


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("best", [4]), ("top-2", [4, 1]), ("all", [0, 1, 2, 3, 4]), ("none", [])],
)
def test_keep_bounds_the_files(tmp_path: Path, policy: str, kept: list[int]) -> None:
    _fake(tmp_path, [0, 1, 2, 3, 4, 9])
    ranked = [4, 1, 3, 0, 2]  # best first; 9 is another worker's, not COMPLETE yet
    checkpoint.enforce_keep(tmp_path, ranked, policy=policy)
    names = sorted(p.name for p in tmp_path.glob("trial-*"))
    assert names == sorted(
        checkpoint.trial_stem(tmp_path, n).with_suffix(s).name
        for n in [*kept, 9]
        for s in (".safetensors", ".json")
    )


def test_checkpoint_root_beside_sqlite_or_given() -> None:
    assert checkpoint.checkpoint_root("sqlite:///runs/study.db", "a b") == Path(
        "runs/study.checkpoints/a_b"
    )
    assert checkpoint.checkpoint_root("postgresql://h/db", "s") is None
    assert checkpoint.checkpoint_root("postgresql://h/db", "s", checkpoint_dir="/x") == Path("/x/s")
    with pytest.raises(Exception, match="top-K"):
        checkpoint.keep_arg("top-0")
