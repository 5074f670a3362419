"""One budgeted training job: the clock, the schedule, the loop, the evaluation.

The budget is wall-clock seconds of training from the first optimizer step to the last, compile
time and host-device copies included; periodic evaluation pauses the clock. The learning rate is a
function of the elapsed budget fraction (linear warmup, then cosine decay to zero at the end),
because the number of steps is not known in advance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from study.config import TrainConfig
from study.errors import UsageError
from study.models import build_model, count_params
from study.result import TrainResult
from study.step import (
    Batches,
    TrainStep,
    autocast_dtype,
    backward_micro_batches,
    ce_chunk_rows,
    fuses_head,
    linear_nll_sum,
)

log = logging.getLogger(__name__)

CURRICULUM_START = 64  # first sequence length of the curriculum


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory."""


# --------------------------------------------------------------------------- device and schedule


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must be present."""
    cuda = torch.cuda.is_available()
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise UsageError("device 'cuda' was asked for but no CUDA device is present")
    if name == "mps" and not mps:
        raise UsageError("device 'mps' was asked for but Apple MPS is not available")
    if name not in ("cuda", "mps", "cpu"):
        raise UsageError(f"unknown device {name!r}; use auto, cuda, mps or cpu")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    # Not the thread count: the CPU thread tuner changes it during a run.
    return f"cpu {platform.machine()}"


def lr_at(frac: float, *, peak: float, warmup_frac: float) -> float:
    """Learning rate at elapsed budget fraction ``frac``: linear warmup, cosine decay to 0 at 1."""
    frac = min(max(frac, 0.0), 1.0)
    if warmup_frac > 0 and frac < warmup_frac:
        return peak * frac / warmup_frac
    progress = (frac - warmup_frac) / (1.0 - warmup_frac)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def seq_len_at(frac: float, *, full: int, curriculum: bool) -> int:
    """Sequence length at ``frac``: with the curriculum, powers of two from 64 that reach the full
    length by half the budget (few distinct shapes, so a compiled step recompiles rarely)."""
    if not curriculum or full <= CURRICULUM_START:
        return full
    doublings = math.ceil(math.log2(full / CURRICULUM_START))
    stage = min(int(frac / 0.5 * doublings), doublings)
    return min(CURRICULUM_START * 2**stage, full)


def default_batch_size(device: torch.device) -> int:
    """Rows per optimizer step when the config leaves it to the trainer."""
    return {"cuda": 256, "mps": 64}.get(device.type, 32)


def versions() -> dict[str, str]:
    import tokenizers

    import study

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "tokenizers": tokenizers.__version__,
        "study": study.__version__,
    }


# --------------------------------------------------------------------------- batches and eval


def eval_windows(tokens: np.ndarray, *, n_tokens: int, seq_len: int) -> np.ndarray:
    """The fixed held-out set: consecutive, non-overlapping windows of ``seq_len + 1`` ids from
    the start of the held-out array (targets overlap inputs by one), as many as fit."""
    n_windows = max(1, min(n_tokens // seq_len, (len(tokens) - 1) // seq_len))
    if len(tokens) < seq_len + 1:
        raise UsageError(
            f"the held-out split has {len(tokens)} tokens, fewer than seq_len + 1 = {seq_len + 1}"
        )
    starts = np.arange(n_windows) * seq_len
    return np.stack([tokens[s : s + seq_len + 1] for s in starts]).astype(np.int64)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    windows: torch.Tensor,
    *,
    token_bytes: torch.Tensor,
    batch_size: int,
    amp: Callable[[], AbstractContextManager[Any]],
    threads: ThreadTuner | None = None,
) -> tuple[float, float]:
    """Mean per-token NLL (nats) on ``windows`` (n, T+1) and bits per byte:
    total NLL / (ln 2 x UTF-8 bytes of the predicted tokens). ``threads`` may time batches to
    pick the CPU thread count."""
    was_training = model.training
    model.eval()
    total_nll = torch.zeros((), dtype=torch.float64, device=windows.device)
    for i in range(0, windows.size(0), batch_size):
        chunk = windows[i : i + batch_size]
        x, y = chunk[:, :-1], chunk[:, 1:]
        if threads is not None:
            threads.before("eval")
        with amp():
            nll = nll_sum(model, x, y)
        total_nll += nll.double()
        if threads is not None:
            threads.after()
    model.train(was_training)
    targets = windows[:, 1:]
    n_bytes = token_bytes[targets].sum().item()
    total = total_nll.item()
    return total / targets.numel(), total / (math.log(2) * n_bytes)


def nll_sum(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed NLL of targets ``y``; models with their own bound (diffusion) provide ``nll_sum``."""
    own = getattr(model, "nll_sum", None)
    if own is not None:
        return own(x, y)
    if fuses_head(model):  # the GPT: its head in chunks, never the whole (B, T, V) logits
        h = model.hidden(x)
        chunk = ce_chunk_rows(x.device, vocab_size=model.head.weight.size(0),
                              half=torch.is_autocast_enabled(x.device.type))
        return linear_nll_sum(h.flatten(0, 1), model.head.weight, y.flatten(), chunk=chunk)
    return model(x, y).float() * y.numel()


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt_ids: list[int],
    *,
    n_tokens: int,
    seq_len: int,
    device: torch.device,
    seed: int,
    temperature: float = 0.8,
    top_k: int = 40,
) -> list[int]:
    """Sample a continuation of ``prompt_ids`` (returns the new ids only)."""
    own = getattr(model, "generate", None)
    if own is not None:
        return list(own(prompt_ids, n_tokens=n_tokens, seed=seed))
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    ids = torch.tensor([prompt_ids or [0]], dtype=torch.long, device=device)
    new: list[int] = []
    for _ in range(n_tokens):
        context = ids[:, -seq_len:]
        if fuses_head(model):  # the last position's logits only
            last = model.hidden(context)[:, -1, :]  # (1, d_model)
            logits = model.head(last).float() / temperature
        else:
            logits = model(context)[:, -1, :].float() / temperature
        if top_k:
            kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
        ids = torch.cat((ids, nxt), dim=1)
        new.append(int(nxt))
    model.train(was_training)
    return new


def accumulate(
    model: nn.Module,
    batches: Batches,
    *,
    rows: int,
    seq_len: int,
    grad_accum: int,
    amp: Callable[[], AbstractContextManager[Any]],
    scaler: torch.amp.GradScaler,
) -> torch.Tensor:
    """Forward and backward ``grad_accum`` micro-batches of ``rows`` windows each, adding to
    ``.grad`` the (scaled) gradient of the mean loss over all ``grad_accum * rows`` windows: each
    micro-batch's mean loss is divided by ``grad_accum``. Returns the detached float32 losses of
    the micro-batches, shape (grad_accum,); the optimizer step is the caller's. (The trainer's
    own step, ``study.step.TrainStep``, runs the same micro-batch loop.)"""
    x, y = batches.sample(rows * grad_accum, seq_len)
    return backward_micro_batches(
        model, x.unflatten(0, (grad_accum, rows)), y.unflatten(0, (grad_accum, rows)), amp=amp,
        scale=scaler.scale,
    )


# --------------------------------------------------------------------------- the clock


@dataclass
class Clock:
    """Counts budgeted seconds; ``pause()`` stops counting (evaluation), ``resume()`` restarts."""

    budget: float
    _spent: float = 0.0
    _since: float | None = None

    def start(self) -> None:
        self._since = time.perf_counter()

    def pause(self) -> None:
        if self._since is not None:
            self._spent += time.perf_counter() - self._since
            self._since = None

    resume = start

    @property
    def elapsed(self) -> float:
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self._spent + running

    @property
    def done(self) -> bool:
        return self.elapsed >= self.budget


@dataclass
class Events:
    """Progress and curve points as JSON lines (for the study runner), flushed as they happen."""

    stream: TextIO | None = None
    points: list[dict[str, float]] = field(default_factory=list)

    def emit(self, kind: str, **values: Any) -> None:
        if self.stream is not None:
            self.stream.write(json.dumps({"kind": kind, **values}) + "\n")
            self.stream.flush()


# --------------------------------------------------------------------------- the job


class ThreadTuner:
    """On CPU, picks the faster of torch's thread count and one thread by timing real steps (or
    evaluation batches) with each, and checks again later. On a machine busy with other work,
    every OpenMP thread waits at each barrier for peers the scheduler has set aside: measured on
    the 2-core machine under load, a training step took 3-16x longer with 2 threads than with 1,
    and an evaluation 5x; idle, 2 threads win. So the untimed first step runs on one thread, and
    while the same choice keeps winning the checks grow rarer (``recheck`` seconds, doubling up
    to ``max_recheck``), which bounds what probing the slow choice costs. Elsewhere: nothing."""

    def __init__(
        self, device: torch.device, *, recheck: float = 20.0, max_recheck: float = 160.0
    ) -> None:
        n = torch.get_num_threads()
        self.options = [n, 1] if device.type == "cpu" and n > 1 else []
        self.recheck = recheck
        self.max_recheck = max_recheck
        self.interval = recheck
        self.best: int | None = None
        self.times: dict[int, float] = {}
        self.pending: list[int] = []
        self.kind = ""
        self.next_check = 0.0
        self.skip = 1  # the first step pays one-off costs: do not time it
        self._started: float | None = None

    def before(self, kind: str = "step") -> None:
        """Before a unit of work of ``kind``: only units of one kind are timed against each
        other (a training step against a training step, an evaluation batch against one)."""
        if not self.options:
            return
        if self.skip:
            self.skip -= 1
            torch.set_num_threads(1)
            return
        now = time.perf_counter()
        if self.pending and kind != self.kind:
            self.pending = []  # a check begun on other work: begin it again on this work
        if not self.pending and now >= self.next_check:
            self.pending, self.times, self.kind = list(self.options), {}, kind
        if self.pending:
            torch.set_num_threads(self.pending[0])
            self._started = now

    def after(self) -> None:
        if self._started is None:
            return
        now = time.perf_counter()
        self.times[self.pending.pop(0)] = now - self._started
        self._started = None
        if not self.pending:
            best = min(self.times, key=self.times.__getitem__)
            same = best == self.best
            self.interval = min(2 * self.interval, self.max_recheck) if same else self.recheck
            self.best = best
            torch.set_num_threads(best)
            self.next_check = now + self.interval
            log.debug("threads: %s -> %d, next check in %.0fs", self.times, best, self.interval)

    @contextmanager
    def one_thread(self) -> Iterator[None]:
        """Tiny ops (sampling token by token) gain nothing from threads and lose much to a busy
        machine: run them on one."""
        if not self.options:
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def eager_attention(device: torch.device) -> AbstractContextManager[Any]:
    """Attention for the eager (uncompiled) model on CUDA, in evaluation and sampling: any backend
    but cuDNN's, which builds and compiles a graph for each new shape, and sampling meets a new
    sequence length at every token. (Training runs compiled, at one shape, and keeps cuDNN.)"""
    if device.type != "cuda":
        return nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
                        SDPBackend.MATH])


def _check_fault_hook(step: int) -> None:
    """Test hook: ``STUDY_FAULT_OOM_AT_STEP=N`` raises the device's out-of-memory error at step N,
    so the out-of-memory path can be tested on a machine without a GPU."""
    at = os.environ.get("STUDY_FAULT_OOM_AT_STEP")
    if at is not None and step == int(at):
        raise torch.OutOfMemoryError("simulated out of memory (STUDY_FAULT_OOM_AT_STEP)")


def train(
    config: TrainConfig,
    *,
    cache_dir: Path | None = None,
    events: TextIO | None = None,
    log_interval: float | None = None,
    out: TextIO | None = sys.stdout,
) -> TrainResult:
    """Train ``config`` for its budget and evaluate it.

    Raises:
        UsageError: bad config or data (before the clock starts).
        Diverged: the training loss became NaN or infinite.
        OutOfMemory: the device ran out of memory.
    """
    threads = torch.get_num_threads()
    try:
        return _train(config, cache_dir=cache_dir, events=events, log_interval=log_interval,
                      out=out)
    finally:
        torch.set_num_threads(threads)  # the CPU thread tuner must not outlive the job


def _train(
    config: TrainConfig,
    *,
    cache_dir: Path | None,
    events: TextIO | None,
    log_interval: float | None,
    out: TextIO | None,
) -> TrainResult:
    config.validate()
    started = time.perf_counter()
    device = resolve_device(config.device)
    from study.data import load_tokens  # tokenizer and token cache: before the clock

    data = load_tokens(
        config.data,
        vocab_size=config.model.vocab_size,
        cache_dir=cache_dir,
        max_stories=config.max_stories,
    )
    log.info("overhead: data loaded in %.2fs", time.perf_counter() - started)
    mc = config.model
    if len(data.train) < mc.seq_len + 2:
        raise UsageError(
            f"the training split has {len(data.train)} tokens, fewer than seq_len + 2 = "
            f"{mc.seq_len + 2}"
        )
    torch.manual_seed(config.seed)
    model = build_model(mc).to(device)
    counts = count_params(mc, model)
    batch_size = config.batch_size or default_batch_size(device)
    dtype = autocast_dtype(config, device)

    def amp() -> AbstractContextManager[Any]:
        if dtype is None:
            return nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    train_tokens = torch.from_numpy(data.train.astype(np.int32)).to(device)
    step_fn = TrainStep(model, config, device=device, tokens=train_tokens, batch_size=batch_size)
    log.info("step: %s, batch %d", step_fn.plan.describe(), batch_size)
    windows = torch.from_numpy(
        eval_windows(data.valid, n_tokens=config.eval_tokens, seq_len=mc.seq_len)
    ).to(device)
    curve_windows = windows[: max(1, config.curve_eval_tokens // mc.seq_len)]
    token_bytes = torch.from_numpy(data.token_bytes.astype(np.int64)).to(device)
    # Small batches on CPU: as fast per token, and they let the thread tuner time them.
    eval_batch = max(1, min(batch_size, 64 if device.type != "cpu" else 8))
    log.info("overhead: ready to train %.2fs after the start", time.perf_counter() - started)
    curve_seconds = 0.0

    if log_interval is None:
        log_interval = min(10.0, max(1.0, config.budget / 10))
    record = Events(events)
    clock = Clock(config.budget)
    step = 0
    tokens_seen = 0
    next_log = log_interval
    next_curve = 1
    rate_mark: tuple[float, int] | None = None  # (elapsed, tokens) when the steady rate starts
    last_train_loss = float("nan")

    def read_loss() -> float:
        nonlocal last_train_loss
        loss, bad = step_fn.read_loss()
        if bad:
            raise Diverged(f"training loss became NaN or infinite by step {step}")
        if math.isfinite(loss):
            last_train_loss = loss
        return last_train_loss

    def check_finite(*, wait: bool = False) -> None:
        if wait:
            step_fn.sync()
        if step_fn.diverged():
            raise Diverged(f"training loss became NaN or infinite by step {step}")

    threads = ThreadTuner(device)
    model.train()
    try:
        clock.start()
        while True:
            elapsed = clock.elapsed
            if elapsed >= config.budget:
                break
            frac = elapsed / config.budget
            lr = lr_at(frac, peak=config.lr, warmup_frac=config.warmup_frac)
            seq_len = seq_len_at(frac, full=mc.seq_len, curriculum=config.curriculum)
            _check_fault_hook(step)
            threads.before()
            tokens_seen += step_fn(lr=lr, seq_len=seq_len)
            threads.after()
            step += 1
            # The flag is a few steps behind on CUDA (no sync); the first steps wait for it.
            check_finite(wait=step <= 2)
            if rate_mark is None and step >= 3 and clock.elapsed >= 0.1 * config.budget:
                step_fn.sync()
                rate_mark = (clock.elapsed, tokens_seen)

            elapsed = clock.elapsed
            if elapsed >= next_log or elapsed >= config.budget:
                train_loss = read_loss()
                tok_s = tokens_seen / max(elapsed, 1e-9)
                if out is not None:
                    print(
                        f"{elapsed:7.1f}/{config.budget:.0f}s | step {step:6d} | "
                        f"loss {train_loss:.4f} | lr {lr:.2e} | {tok_s:,.0f} tok/s",
                        file=out,
                        flush=True,
                    )
                record.emit(
                    "progress", elapsed_s=elapsed, budget=config.budget, step=step,
                    train_loss=train_loss, lr=lr, tok_s=tok_s,
                )
                next_log += log_interval * (math.floor((elapsed - next_log) / log_interval) + 1)

            while next_curve <= config.curve_points and (
                elapsed >= next_curve / config.curve_points * config.budget
            ):
                clock.pause()  # evaluation does not spend the budget
                paused_at = time.perf_counter()
                step_fn.sync()
                train_loss = read_loss()
                at = min(clock.elapsed, config.budget)
                if next_curve == config.curve_points:
                    val_loss = None  # the final evaluation below covers the end point
                else:
                    with eager_attention(device):
                        val_loss, _ = evaluate(
                            model, curve_windows, token_bytes=token_bytes,
                            batch_size=eval_batch, amp=amp, threads=threads,
                        )
                point = {"elapsed_s": at, "tokens": tokens_seen, "train_loss": train_loss,
                         "val_loss": val_loss}
                record.points.append(point)
                record.emit("curve", frac=next_curve / config.curve_points, **point)
                next_curve += 1
                curve_seconds += time.perf_counter() - paused_at
                clock.resume()
        step_fn.sync()
        clock.pause()
        read_loss()
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(f"out of memory at step {step}: {str(exc).splitlines()[0]}") from None
    train_seconds = clock.elapsed

    if rate_mark is not None and train_seconds > rate_mark[0]:
        tokens_per_second = (tokens_seen - rate_mark[1]) / (train_seconds - rate_mark[0])
    else:
        tokens_per_second = tokens_seen / max(train_seconds, 1e-9)

    finished = time.perf_counter()
    with eager_attention(device):
        val_loss, val_bpb = evaluate(
            model, windows, token_bytes=token_bytes, batch_size=eval_batch, amp=amp,
            threads=threads,
        )
    log.info("overhead: final evaluation %.2fs", time.perf_counter() - finished)
    if not math.isfinite(val_loss):
        raise Diverged("held-out loss is NaN or infinite after training")
    if record.points:
        record.points[-1]["val_loss"] = val_loss
    record.emit("final", val_loss=val_loss, val_bpb=val_bpb)

    from study.data import decode, encode

    prompt_ids = encode(data.tokenizer, config.prompt)
    with threads.one_thread(), eager_attention(device):
        new_ids = generate(
            model, prompt_ids, n_tokens=config.sample_tokens, seq_len=mc.seq_len, device=device,
            seed=config.seed,
        )
    sample = config.prompt + decode(data.tokenizer, new_ids)
    log.info("overhead: evaluation and sample %.2fs after training, %.2fs of curve evaluations "
             "while the clock was paused", time.perf_counter() - finished, curve_seconds)

    return TrainResult(
        config=config.to_dict(),
        val_loss=val_loss,
        val_ppl=math.exp(val_loss),
        val_bpb=val_bpb,
        params=counts.total,
        params_nonembedding=counts.nonembedding,
        flops_per_token=counts.flops_per_token,
        tokens_seen=tokens_seen,
        tokens_per_second=tokens_per_second,
        train_seconds=train_seconds,
        steps=step,
        epochs=tokens_seen / len(data.train),
        batch_size=batch_size,
        device=device.type,
        device_name=device_name(device),
        versions=versions(),
        sample=sample,
        curve=record.points,
        val_is_bound=bool(getattr(model, "nll_is_bound", False)),
    )
