"""A training job's setup, everything built before its clock starts: the tokens on the device,
the model, its step and the fixed held-out windows (``Job``), used by ``study.training.trainer``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from study.config import TrainConfig
from study.device import (
    autocast,
    autocast_dtype,
    default_batch_size,
    eager_attention,
    resolve_device,
)
from study.errors import UsageError
from study.models import LanguageModel, ParamCount, build_model, count_params
from study.training.clock import ThreadTuner
from study.training.evaluate import evaluate, heldout_set
from study.training.step import TrainStep
from study.training.warm import warm_compiler

if TYPE_CHECKING:
    from study.data import TokenData

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Everything built before the clock starts: data on the device, the model, its step and the
    fixed held-out windows."""

    config: TrainConfig
    device: torch.device
    data: TokenData
    model: LanguageModel
    counts: ParamCount
    batch_size: int
    step_fn: TrainStep
    windows: torch.Tensor  # (n, seq_len + 1): the held-out windows every point is scored on
    tail: torch.Tensor | None  # (1, r + 1): the last, shorter window of a byte span (eval_bytes)
    token_bytes: torch.Tensor  # UTF-8 bytes of each token id
    eval_batch: int
    amp: Callable[[], AbstractContextManager[Any]]

    @classmethod
    def prepare(
        cls, config: TrainConfig, *, cache_dir: Path | None, data: TokenData | None = None
    ) -> Job:
        """Validate, load the tokens (tokenizer and cache: before the clock), build the model
        and its step.

        Raises:
            UsageError: a bad config, a device not present, too little data.
        """
        config.validate()
        started = time.perf_counter()
        device = resolve_device(config.device)
        if data is None:
            data = load_config_tokens(config, cache_dir=cache_dir)
        log.info("overhead: data loaded in %.2fs", time.perf_counter() - started)
        mc = config.model
        if len(data.train) < mc.seq_len + 2:
            raise UsageError(
                f"the training split has {len(data.train)} tokens, fewer than seq_len + 2 = "
                f"{mc.seq_len + 2}"
            )
        if config.compile is not False:  # once per process; done already in a warm one
            warm_compiler(device)
        torch.manual_seed(config.seed)
        model = build_model(mc).to(device)
        batch_size = config.batch_size or default_batch_size(device)
        train_tokens = torch.from_numpy(data.train.astype(np.int32)).to(device)
        step_fn = TrainStep(
            model, config, device=device, tokens=train_tokens, batch_size=batch_size
        )
        log.info("step: %s, batch %d", step_fn.plan.describe(), batch_size)
        held = heldout_set(
            data.valid,
            seq_len=mc.seq_len,
            eval_tokens=config.eval_tokens,
            eval_bytes=config.eval_bytes,
            token_bytes=data.token_bytes,
            eot_id=data.eot_id,
        )
        log.info("overhead: ready to train %.2fs after the start", time.perf_counter() - started)
        return cls(
            config=config,
            device=device,
            data=data,
            model=model,
            counts=count_params(mc, model),
            batch_size=batch_size,
            step_fn=step_fn,
            windows=torch.from_numpy(held.windows).to(device),
            tail=None if held.tail is None else torch.from_numpy(held.tail).to(device),
            token_bytes=torch.from_numpy(data.token_bytes.astype(np.int64)).to(device),
            # Small batches on CPU: as fast per token, and they let the thread tuner time them.
            eval_batch=max(1, min(batch_size, 64 if device.type != "cpu" else 8)),
            amp=autocast(device, autocast_dtype(config.precision, device)),
        )

    @property
    def eval_tokens(self) -> int:
        """Held-out targets each evaluation scores (``config.eval_tokens`` or what the held-out
        split holds, in whole windows; with ``eval_bytes``, every token of its stories)."""
        tail = 0 if self.tail is None else self.tail.size(1) - 1
        return self.windows.size(0) * (self.windows.size(1) - 1) + tail

    @property
    def eval_bytes(self) -> int:
        """UTF-8 bytes of the held-out targets each evaluation scores (bits per byte's divisor;
        the same in every vocabulary with ``config.eval_bytes``)."""
        tail = 0 if self.tail is None else int(self.token_bytes[self.tail[:, 1:]].sum())
        return int(self.token_bytes[self.windows[:, 1:]].sum()) + tail

    def held_out(self, threads: ThreadTuner) -> tuple[float, float]:
        """Held-out loss and bits per byte on the fixed windows (eager attention on CUDA) of the
        model, or of its weight average with ``ema_decay``: the same windows at every call, so
        an unchanged model gets the same number."""
        ema = self.step_fn.ema  # the weight average, when there is one, is what is scored
        with eager_attention(self.device), ema.swapped() if ema else contextlib.nullcontext():
            return evaluate(
                self.model,
                self.windows,
                token_bytes=self.token_bytes,
                batch_size=self.eval_batch,
                amp=self.amp,
                threads=threads,
                tail=self.tail,
            )


def load_config_tokens(config: TrainConfig, *, cache_dir: Path | None) -> TokenData:
    """The tokens of ``config``'s corpus, tokenizer and story limit (built once, then mapped)."""
    from study.data import load_tokens

    return load_tokens(
        config.data,
        vocab_size=config.model.vocab_size,
        cache_dir=cache_dir,
        max_stories=config.max_stories,
    )
