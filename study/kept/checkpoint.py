"""A trained model kept on disk: its final weights and what is needed to use them again.

A checkpoint is two files of one stem: ``STEM.safetensors`` (the state dict, on the CPU) and
``STEM.json`` (the full TrainConfig, the tokenizer it was trained with by reference, and the
held-out numbers the trial recorded). Both are written whole or not at all
(``study.fileio.atomic_write``: temporary file, fsync, ``os.replace``), weights first, so a
JSON present means its weights are complete; a kill mid-write leaves only a temporary file
(``.STEM...tmp``), never a half checkpoint.

A study keeps its checkpoints in one folder per study (``checkpoint_root``): next to an SQLite
file by default, wherever ``--checkpoint-dir`` says for a server. ``enforce_keep`` applies the
``--keep`` policy there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study.config import TrainConfig
from study.errors import UsageError
from study.fileio import atomic_write, atomic_write_bytes, write_json

if TYPE_CHECKING:
    import torch

    from study.data import TokenData
    from study.models import LanguageModel
    from study.result import TrainResult

log = logging.getLogger(__name__)

FORMAT = 1
WEIGHTS, META = ".safetensors", ".json"
DEFAULT_KEEP = "top-3"
TRIAL_STEM = "trial-{number:05d}"
_TOP = re.compile(r"top-([1-9][0-9]*)")
# Test hook: a failure between writing a file and renaming it into place (a kill mid-write).
FAULT_ENV = "STUDY_FAULT_CHECKPOINT_WRITE"


def keep_arg(text: str) -> str:
    """``--keep``: ``best``, ``top-K`` (K >= 1), ``all`` or ``none``; returned as given."""
    if text in ("best", "all", "none") or _TOP.fullmatch(text):
        return text
    import argparse

    raise argparse.ArgumentTypeError(
        f"--keep must be best, top-K (e.g. top-3), all or none, not {text!r}"
    )


def keep_count(policy: str) -> int | None:
    """How many checkpoints ``policy`` keeps per study (None: all)."""
    if policy == "all":
        return None
    if policy == "none":
        return 0
    if policy == "best":
        return 1
    match = _TOP.fullmatch(policy)
    if match is None:
        raise UsageError(f"--keep must be best, top-K, all or none, not {policy!r}")
    return int(match.group(1))


def checkpoint_root(
    storage: str, study_name: str, *, checkpoint_dir: str | None = None
) -> Path | None:
    """The folder of ``study_name``'s checkpoints: ``checkpoint_dir/<study>`` if given, else
    ``<db stem>.checkpoints/<study>`` beside an SQLite file; None for a server without
    ``checkpoint_dir`` (nothing is kept: there is no folder every worker would agree on)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", study_name)
    if checkpoint_dir is not None:
        return Path(checkpoint_dir) / safe
    if storage.startswith("sqlite:///"):
        db = Path(storage.removeprefix("sqlite:///").split("?")[0])
        if db.name and db.name != ":memory:":
            return db.parent / f"{db.stem}.checkpoints" / safe
    return None


def trial_stem(root: Path, number: int) -> Path:
    return root / TRIAL_STEM.format(number=number)


# --------------------------------------------------------------------------- writing


def state_dict_cpu(model: LanguageModel) -> dict[str, torch.Tensor]:
    """The model's tensors, contiguous copies on the CPU (a tied embedding becomes two copies:
    safetensors refuses shared storage, and loading assigns both keys back to one tensor)."""
    module: Any = model
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save(
    stem: Path,
    model: LanguageModel,
    *,
    config: TrainConfig,
    data: TokenData,
    metrics: Mapping[str, Any],
) -> Path:
    """Write ``stem``.safetensors then ``stem``.json, each atomically. Returns the weights'
    path. ``metrics``: the trial's recorded numbers (val_loss, val_bpb, steps, ...)."""
    from safetensors.torch import save as st_save

    from study.data.cache import tokenizer_sha256

    stem.parent.mkdir(parents=True, exist_ok=True)
    weights = stem.with_suffix(WEIGHTS)
    blob = st_save(state_dict_cpu(model), metadata={"format": str(FORMAT)})
    _write(weights, blob)
    meta = {
        "format": FORMAT,
        "weights": weights.name,
        "config": config.to_dict(),
        "tokenizer": {
            "data": config.data,
            "vocab_size": config.model.vocab_size,
            "max_stories": config.max_stories,
            "fingerprint": data.fingerprint,
            "sha256": tokenizer_sha256(data.tokenizer),
        },
        **dict(metrics),
    }
    _write(stem.with_suffix(META), (json.dumps(meta, indent=2) + "\n").encode())
    return weights


def save_result(stem: Path, model: LanguageModel, *, result: TrainResult, data: TokenData) -> None:
    """``save`` at the end of a run, with the numbers it recorded (to check a reload against)."""
    keys = ("val_loss", "val_bpb", "val_ppl", "steps", "tokens_seen", "eval_tokens", "params")
    started = time.perf_counter()
    config = TrainConfig.from_dict(result.config)
    save(stem, model, config=config, data=data, metrics={k: getattr(result, k) for k in keys})
    log.info("overhead: checkpoint written in %.2fs", time.perf_counter() - started)


def _write(path: Path, blob: bytes) -> None:
    if os.environ.get(FAULT_ENV) != path.suffix:
        atomic_write_bytes(path, blob)
        return

    def write_then_fail(f: Any) -> None:
        f.write(blob)
        raise OSError(f"simulated failure before {path.name} was renamed ({FAULT_ENV})")

    atomic_write(path, write_then_fail)


def install(src_stem: Path, dest_stem: Path) -> Path:
    """Copy a checkpoint written elsewhere (a trial's temporary folder) to ``dest_stem``,
    atomically, weights first. Returns the weights' new path."""
    dest_stem.parent.mkdir(parents=True, exist_ok=True)
    for suffix in (WEIGHTS, META):
        data = src_stem.with_suffix(suffix).read_bytes()
        if suffix == META:
            meta = json.loads(data)
            meta["weights"] = dest_stem.with_suffix(WEIGHTS).name
            data = (json.dumps(meta, indent=2) + "\n").encode()
        _write(dest_stem.with_suffix(suffix), data)
    return dest_stem.with_suffix(WEIGHTS)


def remove(stem: Path) -> None:
    """Delete a checkpoint: JSON first, so a half-removed one never looks complete."""
    for suffix in (META, WEIGHTS):
        stem.with_suffix(suffix).unlink(missing_ok=True)


def enforce_keep(root: Path, ranked: Iterable[int], *, policy: str) -> list[int]:
    """Keep the checkpoints of the first ``keep_count(policy)`` trial numbers of ``ranked``
    (best first: the study's complete trials by value) and remove the other ranked ones'.
    A checkpoint of a trial not ranked is left alone: another worker may have just written it,
    its trial not COMPLETE yet. Returns the trial numbers removed."""
    count = keep_count(policy)
    if count is None or not root.is_dir():
        return []
    order = list(ranked)
    removed = []
    for number in order[count:]:
        stem = trial_stem(root, number)
        if stem.with_suffix(META).exists() or stem.with_suffix(WEIGHTS).exists():
            remove(stem)
            removed.append(number)
    write_json(root / "keep.json", {"policy": policy, "kept": sorted(order[:count])})
    return removed


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, on ``device``), its config and the JSON."""

    model: LanguageModel
    config: TrainConfig
    meta: dict[str, Any]
    path: Path


def load(stem_or_file: Path, *, device: str = "cpu") -> Checkpoint:
    """Build the model of the checkpoint's config and load its weights onto ``device``.

    Raises:
        UsageError: no complete checkpoint there, or one that does not fit its config.
    """
    from safetensors.torch import load_file

    from study.device import resolve_device
    from study.models import build_model

    stem = Path(stem_or_file)
    if stem.suffix in (WEIGHTS, META):
        stem = stem.with_suffix("")
    meta_path = stem.with_suffix(META)
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise UsageError(f"no checkpoint at {stem} (no {meta_path.name})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read checkpoint {meta_path}: {exc}") from None
    config = TrainConfig.from_dict(meta["config"])
    weights = stem.parent / meta.get("weights", stem.name + WEIGHTS)
    if not weights.is_file():
        raise UsageError(f"checkpoint {meta_path} has no weights file {weights.name}")
    where = resolve_device(device)
    model = build_model(config.model)
    try:
        model.load_state_dict(load_file(str(weights)))  # type: ignore[attr-defined]
    except RuntimeError as exc:
        raise UsageError(f"checkpoint {weights} does not fit its config: {exc}") from None
    model = model.to(where)
    model.train(False)
    return Checkpoint(model=model, config=config, meta=meta, path=weights)


def load_tokens_of(checkpoint: Checkpoint, *, cache_dir: Path | None = None) -> TokenData:
    """The tokens (and tokenizer) the checkpoint's trial was trained on, from the cache; warns
    when the tokenizer rebuilt there differs from the one recorded."""
    from study.data import load_tokens
    from study.data.cache import tokenizer_sha256

    ref = checkpoint.meta.get("tokenizer", {})
    config = checkpoint.config
    data = load_tokens(
        config.data,
        vocab_size=config.model.vocab_size,
        cache_dir=cache_dir,
        max_stories=config.max_stories,
    )
    if ref.get("sha256") not in (None, tokenizer_sha256(data.tokenizer)):
        log.warning(
            "the tokenizer built from %s differs from the one the model was trained with",
            config.data,
        )
    return data
