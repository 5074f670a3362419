"""One budgeted training job: its setup (``study.training.setup``), the loop, the final evaluation.

The budget is wall-clock seconds of training from the first optimizer step to the last, compile
time and host-device copies included; periodic evaluation pauses the clock (``study.training.clock``).
The learning rate and the curriculum follow the elapsed budget fraction (``study.training.schedule``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import torch

from study import events as ev
from study.config import TrainConfig
from study.device import (
    device_name,
    eager_attention,
    versions,
)
from study.events import Events
from study.fmt import fmt_count
from study.result import CurvePoint, TrainResult
from study.training.clock import Clock, ThreadTuner
from study.training.schedule import lr_at, seq_len_at
from study.training.setup import Job
from study.training.step import GRAPH_WARMUP

if TYPE_CHECKING:
    from study.data import TokenData

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory."""


def train(
    config: TrainConfig,
    *,
    cache_dir: Path | None = None,
    events: TextIO | None = None,
    log_interval: float | None = None,
    out: TextIO | None = sys.stdout,
    data: TokenData | None = None,
    checkpoint: Path | None = None,
) -> TrainResult:
    """Train ``config`` for its budget (or ``config.steps`` steps) and evaluate it. ``data``:
    the tokens of ``config``'s corpus, tokenizer and story limit, already loaded (a warm
    process); else they are loaded. ``checkpoint``: a stem to keep the final weights at
    (``study.kept.checkpoint``), written after the clock stopped, so the budget does not pay for it.

    Raises:
        UsageError: bad config or data (before the clock starts).
        Diverged: the training loss became NaN or infinite.
        OutOfMemory: the device ran out of memory.
    """
    threads = torch.get_num_threads()
    started = time.perf_counter()
    try:
        job = Job.prepare(config, cache_dir=cache_dir, data=data)
        if log_interval is None:
            log_interval = min(10.0, max(1.0, config.budget / 10))
        run = Run(job, events=Events(events), log_interval=log_interval, out=out)
        run.setup_seconds = time.perf_counter() - started
        try:
            run.loop()
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(
                f"out of memory at step {run.step}: {str(exc).splitlines()[0]}"
            ) from None
        result = run.finish()
        if checkpoint is not None:
            from study.kept.checkpoint import save_result

            save_result(checkpoint, job.model, result=result, data=job.data)
        return result
    finally:
        torch.set_num_threads(threads)  # the CPU thread tuner must not outlive the job


# --------------------------------------------------------------------------- before the clock


# --------------------------------------------------------------------------- the loop


class Run:
    """The state of one budgeted run: the clock, the counters, when the next progress line and
    curve point are due, and the curve so far."""

    def __init__(
        self, job: Job, *, events: Events, log_interval: float, out: TextIO | None
    ) -> None:
        self.job = job
        self.config = job.config
        self.events = events
        self.out = out
        self.log_interval = log_interval
        self.clock = Clock(job.config.budget)
        # A --steps run is an exact re-run: a thread count chosen by timing would change the
        # order of the CPU's parallel reductions, and the losses' last bits with it.
        self.threads = ThreadTuner(job.device, enabled=job.config.steps is None)
        self.step = 0
        self.tokens_seen = 0
        self.next_log = log_interval
        self.next_curve = 1
        self.rate_mark: tuple[float, int] | None = None  # (elapsed, tokens) of the steady rate
        self.last_train_loss = float("nan")
        self.curve: list[CurvePoint] = []
        self.eval_seconds = 0.0  # curve points and the final evaluation, clock paused
        self.setup_seconds: float | None = None  # before the clock: set by ``train``
        self.compile_seconds = 0.0  # budgeted seconds of the steps that compiled or captured
        self._shape: tuple[int, int] | None = None
        self._compile_steps_left = 0
        self.oom_at = _fault_oom_step()  # read once: the loop only compares a number

    def fraction(self, elapsed: float) -> float:
        """How far the run is: the step fraction with ``config.steps``, else the elapsed budget
        fraction (the schedule, the curve points and the end all follow it)."""
        if self.config.steps is not None:
            return self.step / self.config.steps
        return elapsed / self.config.budget

    def loop(self) -> None:
        """Train until the budget (or ``config.steps``) is spent; the clock is paused when this
        returns."""
        config, step_fn = self.config, self.job.step_fn
        self.job.model.train()
        self.clock.start()
        frac = self.fraction(self.clock.elapsed)
        # One reading of the clock after each step decides the progress line, the curve points
        # due and whether the budget is spent: a second reading for the loop's check could find
        # the budget spent where the first had not, and the last curve point would be lost.
        while frac < 1:
            lr = lr_at(
                frac,
                peak=config.lr,
                warmup_frac=config.warmup_frac,
                schedule=config.schedule,
                cooldown_frac=config.cooldown_frac,
            )
            seq_len = seq_len_at(frac, full=config.model.seq_len, curriculum=config.curriculum)
            if self.step == self.oom_at:
                raise torch.OutOfMemoryError("simulated out of memory (STUDY_FAULT_OOM_AT_STEP)")
            compiling = self.compiles((step_fn.rows_at(seq_len), seq_len))
            if compiling:  # the device's queue drained before and after: only this step counts
                step_fn.sync()
                began = time.perf_counter()
            self.threads.before()
            self.tokens_seen += step_fn(lr=lr, seq_len=seq_len)
            self.threads.after()
            if compiling:
                step_fn.sync()
                self.compile_seconds += time.perf_counter() - began
            self.step += 1
            # The flag is a few steps behind on CUDA (no sync); the first steps wait for it.
            self.check_finite(wait=self.step <= 2)
            if (
                self.rate_mark is None
                and self.step >= 3
                and self.fraction(self.clock.elapsed) >= 0.1
            ):
                step_fn.sync()
                self.rate_mark = (self.clock.elapsed, self.tokens_seen)
            elapsed = self.clock.elapsed
            frac = self.fraction(elapsed)
            if elapsed >= self.next_log or frac >= 1:
                self.progress(elapsed, lr)
            while self.next_curve <= config.curve_points and (
                frac >= self.next_curve / config.curve_points
            ):
                self.curve_point()
        step_fn.sync()
        self.clock.pause()
        self.read_loss()

    def compiles(self, shape: tuple[int, int]) -> bool:
        """Whether the next step, at batch ``shape`` (rows, seq_len), compiles or captures.

        A compiled step compiles on its first call at each new shape (``dynamic=False``); a
        CUDA-graphed one runs ``GRAPH_WARMUP`` eager steps (where compile and autotuning happen)
        and then captures (``study.training.step.TrainStep._graph_step``). Eager steps never compile.
        """
        plan = self.job.step_fn.plan
        if not (plan.compile or plan.cuda_graph):
            return False
        if shape != self._shape:
            self._shape = shape
            self._compile_steps_left = GRAPH_WARMUP + 1 if plan.cuda_graph else 1
        if self._compile_steps_left <= 0:
            return False
        self._compile_steps_left -= 1
        return True

    def read_loss(self) -> float:
        """Mean training loss since the last read (the last finite one if no step since)."""
        loss, bad = self.job.step_fn.read_loss()
        if bad:
            raise Diverged(f"training loss became NaN or infinite by step {self.step}")
        if math.isfinite(loss):
            self.last_train_loss = loss
        return self.last_train_loss

    def check_finite(self, *, wait: bool = False) -> None:
        if wait:
            self.job.step_fn.sync()
        if self.job.step_fn.diverged():
            raise Diverged(f"training loss became NaN or infinite by step {self.step}")

    def progress(self, elapsed: float, lr: float) -> None:
        """One progress line (and event); the next is due one interval on."""
        train_loss = self.read_loss()
        tok_s = self.tokens_seen / max(elapsed, 1e-9)
        budget = self.config.budget
        if self.out is not None:
            print(
                f"{elapsed:7.1f}/{budget:.0f}s | step {self.step:6d} | "
                f"loss {train_loss:.4f} | lr {lr:.2e} | {fmt_count(tok_s)} tok/s",
                file=self.out,
                flush=True,
            )
        self.events.emit(
            ev.progress(
                elapsed_s=elapsed,
                budget=budget,
                step=self.step,
                train_loss=train_loss,
                lr=lr,
                tok_s=tok_s,
            )
        )
        interval = self.log_interval
        self.next_log += interval * (math.floor((elapsed - self.next_log) / interval) + 1)

    def curve_point(self) -> None:
        """The next curve point, with the clock paused (evaluation does not spend the budget),
        scored on the same windows as the final point. The last point's held-out loss is the
        final evaluation itself (``finish``): one measurement, not two."""
        self.clock.pause()
        paused_at = time.perf_counter()
        self.job.step_fn.sync()
        train_loss = self.read_loss()
        at = self.clock.elapsed
        if self.config.steps is None:
            at = min(at, self.config.budget)
        val_loss = val_bpb = None
        if self.next_curve < self.config.curve_points:
            val_loss, val_bpb = self.job.held_out(self.threads)
        point = CurvePoint(
            elapsed_s=at,
            tokens=self.tokens_seen,
            train_loss=train_loss,
            val_loss=val_loss,
            eval_tokens=self.job.eval_tokens,
        )
        self.curve.append(point)
        frac = self.next_curve / self.config.curve_points
        self.events.emit(ev.curve(frac=frac, point=point, val_bpb=val_bpb))
        self.next_curve += 1
        self.eval_seconds += time.perf_counter() - paused_at
        self.clock.resume()

    def tokens_per_second(self) -> float:
        """Steady-state rate: from the mark after the first steps (compile, warm-up) to the end."""
        seconds = self.clock.elapsed
        # A mark at the last step (a 3-step run) leaves no tokens after it: use the whole run.
        if (
            self.rate_mark is not None
            and seconds > self.rate_mark[0]
            and self.tokens_seen > self.rate_mark[1]
        ):
            return (self.tokens_seen - self.rate_mark[1]) / (seconds - self.rate_mark[0])
        return self.tokens_seen / max(seconds, 1e-9)

    def finish(self) -> TrainResult:
        """Evaluate on the held-out windows, sample, and gather the result."""
        job = self.job
        finished = time.perf_counter()
        val_loss, val_bpb = job.held_out(self.threads)
        self.eval_seconds += time.perf_counter() - finished
        log.info("overhead: final evaluation %.2fs", time.perf_counter() - finished)
        if not math.isfinite(val_loss):
            raise Diverged("held-out loss is NaN or infinite after training")
        if self.curve:
            self.curve[-1]["val_loss"] = val_loss
        self.events.emit(ev.final(val_loss=val_loss, val_bpb=val_bpb))
        sampled = time.perf_counter()
        sample = self.sample()
        sample_seconds = time.perf_counter() - sampled
        log.info(
            "overhead: evaluation and sample %.2fs after training, %.2fs of evaluation "
            "in all while the clock was paused",
            time.perf_counter() - finished,
            self.eval_seconds,
        )
        return TrainResult(
            config=self.config.to_dict(),
            val_loss=val_loss,
            val_ppl=math.exp(val_loss),
            val_bpb=val_bpb,
            params=job.counts.total,
            params_nonembedding=job.counts.nonembedding,
            flops_per_token=job.counts.flops_per_token,
            tokens_seen=self.tokens_seen,
            tokens_per_second=self.tokens_per_second(),
            train_seconds=self.clock.elapsed,
            steps=self.step,
            unique_tokens=job.data.unique_tokens,
            epochs=self.tokens_seen / job.data.unique_tokens,
            batch_size=job.batch_size,
            device=job.device.type,
            device_name=device_name(job.device),
            versions=versions(),
            sample=sample,
            curve=self.curve,
            val_is_bound=job.model.nll_is_bound,
            eval_tokens=job.eval_tokens,
            eval_bytes=job.eval_bytes,
            eval_seconds=self.eval_seconds,
            compile_seconds=self.compile_seconds,
            setup_seconds=self.setup_seconds,
            sample_seconds=sample_seconds,
        )

    def sample(self) -> str:
        """The prompt and the model's continuation of it, as text."""
        from study.data import decode, encode

        config = self.config
        prompt_ids = encode(self.job.data.tokenizer, config.prompt)
        with self.threads.one_thread(), eager_attention(self.job.device):
            new_ids = self.job.model.generate(
                prompt_ids, n_tokens=config.sample_tokens, seed=config.seed
            )
        return config.prompt + decode(self.job.data.tokenizer, new_ids)


def _fault_oom_step() -> int | None:
    """Test hook: with ``STUDY_FAULT_OOM_AT_STEP=N`` the loop raises the device's out-of-memory
    error at step N, so the out-of-memory path can be tested on a machine without a GPU."""
    at = os.environ.get("STUDY_FAULT_OOM_AT_STEP")
    return int(at) if at is not None else None
