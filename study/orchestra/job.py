"""Run one ``python -m study.train`` child for a trial and say how it ended.

The child trains in its own process, so a crash, a NaN or an out-of-memory ends the trial, never
the study. Its events file is tailed while it runs: progress lines go to ``on_progress`` and curve
points (the final evaluation as the point at fraction 1) to ``on_curve``, which may answer True
to stop the child (pruning). Nothing here knows about
Optuna; the worker wires these callbacks to a trial.

``WarmPool`` keeps one child started ahead (``python -m study.train --config-from-stdin``: torch
imported, device open, tokens mapped) and hands it the next trial's config, so a trial's time
outside its budget loses the start-up. The parent measures each trial's whole wall time (from
spawning the child, or handing a warm one its config, to its exit) and stores it in the result
as ``outside_seconds`` = that time minus ``train_seconds``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study import events as ev
from study.config import TrainConfig
from study.fileio import write_json
from study.kept.checkpoint import install
from study.orchestra.event_reader import EventReader
from study.result import EXIT_DIVERGED, EXIT_OK, EXIT_OOM, EXIT_USAGE, TrainResult

log = logging.getLogger(__name__)

POLL_S = 0.25
STOP_GRACE_S = 5.0  # seconds a stopped child gets to exit on SIGTERM before SIGKILL
TAIL_LINES = 5
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PRESTART_ENV = "STUDY_PRESTART"  # 1: always start the next trial's process ahead, 0: never
PRESTART_CORES = 4  # fewer cores (and no CUDA): a warm-up would slow the trial that trains


@dataclass(frozen=True)
class Outcome:
    """How a trial's job ended: ``state`` is ``complete`` (with ``result``), ``fail`` or
    ``pruned``; ``reason`` says why it failed or where it was pruned."""

    state: str
    result: TrainResult | None = None
    reason: str = ""
    seconds: float = 0.0  # wall time of the child, start-up and evaluation included
    checkpoint: str | None = None  # where the trial's final weights were kept (run_job keep_to)


class Child:
    """One ``study.train`` process and the folder of its config, result, events and output.

    ``warm`` children were started with ``--config-from-stdin`` and wait for ``hand``.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        config: TrainConfig,
        warm: bool,
        cache_dir: str | None,
        env: Mapping[str, str] | None,
        checkpoint: bool = False,
    ) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="study-trial-")
        folder = Path(self._tmp.name)
        self.result_path, self.log_path = folder / "result.json", folder / "output.log"
        self.checkpoint = folder / "model" if checkpoint else None  # a stem: study.kept.checkpoint
        self.events = EventReader(folder / "events.jsonl")
        self.warm = warm
        config_path = folder / "config.json"  # the trial's, or the warm-up's hint
        write_json(config_path, config.to_dict())
        argv = [
            *command,
            "--json",
            str(self.result_path),
            "--events",
            str(self.events.path),
            "--quiet",
        ]
        argv += (
            ["--config-from-stdin", "--warm-config", str(config_path)]
            if warm
            else ["--config", str(config_path)]
        )
        if cache_dir is not None:
            argv += ["--cache-dir", str(cache_dir)]
        if self.checkpoint is not None:
            argv += ["--checkpoint", str(self.checkpoint)]
        self.started = time.monotonic()
        with open(self.log_path, "wb") as output:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if warm else subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
            )

    def hand(self, config: TrainConfig) -> None:
        """Give a warm child its trial; the trial's wall time starts now."""
        self.started = time.monotonic()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(config.to_dict()).encode())
            self.proc.stdin.close()
        except BrokenPipeError:
            pass  # it died warming up: its exit status and output tell why

    def close(self) -> None:
        """Stop the process if it still runs and remove its folder."""
        stop(self)
        self._tmp.cleanup()


class WarmPool:
    """At most one child of a worker started ahead and warming up while a trial trains.

    ``take`` returns the warm child (None when there is none yet or ``enabled`` is False) and
    ``refill`` starts the next one, warmed with the given config's device and tokens.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        enabled: bool,
        cache_dir: str | None = None,
        env: Mapping[str, str] | None = None,
        checkpoint: bool = False,
    ) -> None:
        self.command, self.enabled = tuple(command), enabled
        self.cache_dir, self.env, self.checkpoint = cache_dir, env, checkpoint
        self._child: Child | None = None

    def take(self) -> Child | None:
        child, self._child = self._child, None
        if child is not None and child.proc.poll() is not None:
            child.close()  # died while warming up (e.g. killed): start the trial cold
            return None
        return child

    def refill(self, config: TrainConfig) -> None:
        if self.enabled and self._child is None:
            self._child = Child(
                self.command,
                config=config,
                warm=True,
                cache_dir=self.cache_dir,
                env=self.env,
                checkpoint=self.checkpoint,
            )

    def close(self) -> None:
        if self._child is not None:
            self._child.close()
            self._child = None


def prestart_enabled(device: str, *, cores: int | None = None) -> bool:
    """Whether to start each next trial's process while the current one trains: with
    ``$STUDY_PRESTART`` 1 or 0 as it says; else for ``cuda``, and for ``auto`` on a machine of
    ``PRESTART_CORES`` cores or more. Never by default for ``cpu`` or ``mps``: there the warm-up
    (seconds of imports and token mapping) would take cores from the trial that is training,
    whose budget and tokens/s it would then distort."""
    forced = os.environ.get(PRESTART_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    cores = (os.cpu_count() or 1) if cores is None else cores
    return device == "cuda" or (device == "auto" and cores >= PRESTART_CORES)


def compile_cache_env(cache_dir: str | None) -> dict[str, str]:
    """Environment for a trainer child that keeps PyTorch's compile artefacts on disk under the
    study's cache folder (``cache_dir``, else ``study.data``'s default), so a trial of a shape
    compiled before loads Inductor's FX graphs, AOT autograd graphs and Triton kernels instead
    of compiling them again (PyTorch's own caches; by default they live in /tmp and the
    FX-graph and autograd ones may be off). Variables already set in this environment win."""
    from study.data.tokens import default_cache_dir

    root = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "torch-compile"
    wanted = {
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
        "TRITON_CACHE_DIR": str(root / "triton"),
        "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
        "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
    }
    return {k: v for k, v in wanted.items() if k not in os.environ}


def run_job(
    config: TrainConfig,
    *,
    command: Sequence[str],
    cache_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_curve: Callable[[dict[str, Any]], bool] | None = None,
    on_tick: Callable[[], None] | None = None,
    pool: WarmPool | None = None,
    keep_to: Path | None = None,
) -> Outcome:
    """Train ``config`` in a child ``command`` (e.g. ``python -m study.train``) and wait for it.

    With a ``pool``, its warm child (if any) takes the trial and the pool starts the next one.
    ``keep_to``: a checkpoint stem (``study.kept.checkpoint``) where a complete trial's final weights
    are copied from the child's folder, after it exited (its budget has long stopped); the
    pool's children must then be made with ``checkpoint=True``.
    ``on_tick`` runs every poll (about 4 times a second) so the caller can send heartbeats.
    If this process is interrupted the child is stopped before the exception propagates.
    """
    child = pool.take() if pool is not None else None
    if child is not None:
        child.hand(config)
    else:
        child = Child(
            command,
            config=config,
            warm=False,
            cache_dir=cache_dir,
            env=env,
            checkpoint=keep_to is not None,
        )
    try:
        if pool is not None:
            pool.refill(config)
        outcome = _watch(child, on_progress=on_progress, on_curve=on_curve, on_tick=on_tick)
        return _keep(outcome, child.checkpoint, keep_to)
    finally:
        child.close()


def _keep(outcome: Outcome, written: Path | None, keep_to: Path | None) -> Outcome:
    """Copy a complete trial's checkpoint from the child's folder to ``keep_to``."""
    if outcome.state != "complete" or not (written and keep_to):
        return outcome
    if not written.with_suffix(".json").is_file():
        log.warning("the trainer wrote no checkpoint; nothing is kept of this trial's weights")
        return outcome
    try:
        kept = install(written, keep_to)
    except OSError as exc:  # the trial's result stands; only its weights are lost
        log.warning("could not keep the checkpoint in %s: %s", keep_to.parent, exc)
        return outcome
    return dataclasses.replace(outcome, checkpoint=str(kept))


def _watch(
    child: Child,
    *,
    on_progress: Callable[[dict[str, Any]], None] | None,
    on_curve: Callable[[dict[str, Any]], bool] | None,
    on_tick: Callable[[], None] | None,
) -> Outcome:
    """Pass the child's events on until it exits (or is pruned); how it ended."""
    proc, events, start = child.proc, child.events, child.started
    try:
        while True:
            status = proc.poll()
            for event in events.read():
                if event.get("kind") == ev.PROGRESS and on_progress is not None:
                    on_progress(event)
                elif event.get("kind") in (ev.CURVE, ev.FINAL) and on_curve is not None:
                    if event["kind"] == ev.FINAL:  # the full evaluation closes the curve
                        event = {**event, "frac": 1.0}
                    # Once the child has finished its result stands; only report the point.
                    if on_curve(event) and status is None:
                        stop(child)
                        frac = float(event.get("frac", math.nan))
                        return Outcome(
                            "pruned",
                            reason=f"pruned at {frac:.0%} of the budget",
                            seconds=time.monotonic() - start,
                        )
            if status is not None:
                break
            if on_tick is not None:
                on_tick()
            time.sleep(POLL_S)
    except BaseException:
        stop(child)
        raise
    seconds = time.monotonic() - start
    outcome = _outcome(status, child.result_path, child.log_path)
    if outcome.result is not None:
        outcome = dataclasses.replace(
            outcome,
            result=dataclasses.replace(
                outcome.result, outside_seconds=max(0.0, seconds - outcome.result.train_seconds)
            ),
        )
    return dataclasses.replace(outcome, seconds=seconds)


def _outcome(status: int, result_path: Path, log_path: Path) -> Outcome:
    tail = _tail(log_path)
    if status == EXIT_OK:
        try:
            return Outcome("complete", TrainResult(**json.loads(result_path.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            return Outcome("fail", reason=f"crash: exit 0 but no readable result ({exc})")
    if status in (EXIT_DIVERGED, EXIT_OOM):
        kind = "diverged" if status == EXIT_DIVERGED else "oom"
        try:
            failed = json.loads(result_path.read_text())
            return Outcome("fail", reason=f"{failed.get('error', kind)}: {failed['reason']}")
        except (OSError, ValueError, TypeError, KeyError):
            return Outcome("fail", reason=f"{kind}: {tail or 'no reason given'}")
    if status == EXIT_USAGE:
        return Outcome("fail", reason=f"usage: the trainer refused the config: {tail}")
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        hint = " (the host's out-of-memory killer?)" if -status == signal.SIGKILL else ""
        detail = f": {tail}" if tail else ""
        return Outcome("fail", reason=f"crash: killed by {name}{hint}{detail}")
    return Outcome("fail", reason=f"crash: exit status {status}: {tail or 'no output'}")


def _tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-TAIL_LINES:])[-1000:]


def stop(child: Child) -> None:
    """SIGTERM, then SIGKILL if the child has not exited within ``STOP_GRACE_S``."""
    proc = child.proc
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def die_with_parent(parent: int | None = None) -> None:
    """On Linux, ask the kernel to SIGKILL this process when its parent dies.

    A worker killed with SIGKILL then leaves no orphan training behind (its trial is recovered as
    stale on the next run). ``parent``, the pid that started this process: if it died before the
    signal was armed (the kernel would never send it), exit at once. Elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os._exit(1)
