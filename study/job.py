"""Run one ``python -m study.train`` child for a trial and say how it ended.

The child trains in its own process, so a crash, a NaN or an out-of-memory ends the trial, never
the study. Its events file is tailed while it runs: progress lines go to ``on_progress`` and curve
points (the final evaluation as the point at fraction 1) to ``on_curve``, which may answer True
to stop the child (pruning). Nothing here knows about
Optuna; the worker wires these callbacks to a trial.
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

from study.config import TrainConfig
from study.fileio import write_json
from study.result import EXIT_DIVERGED, EXIT_OK, EXIT_OOM, EXIT_USAGE, TrainResult

log = logging.getLogger(__name__)

POLL_S = 0.25
STOP_GRACE_S = 5.0  # seconds a stopped child gets to exit on SIGTERM before SIGKILL
TAIL_LINES = 5
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class Outcome:
    """How a trial's job ended: ``state`` is ``complete`` (with ``result``), ``fail`` or
    ``pruned``; ``reason`` says why it failed or where it was pruned."""

    state: str
    result: TrainResult | None = None
    reason: str = ""
    seconds: float = 0.0  # wall time of the child, start-up and evaluation included


def run_job(
    config: TrainConfig,
    *,
    command: Sequence[str],
    cache_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    on_curve: Callable[[dict[str, Any]], bool] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> Outcome:
    """Train ``config`` in a child ``command`` (e.g. ``python -m study.train``) and wait for it.

    ``on_tick`` runs every poll (about 4 times a second) so the caller can send heartbeats.
    If this process is interrupted the child is stopped before the exception propagates.
    """
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="study-trial-") as tmp:
        folder = Path(tmp)
        config_path, result_path = folder / "config.json", folder / "result.json"
        events_path, log_path = folder / "events.jsonl", folder / "output.log"
        write_json(config_path, config.to_dict())
        argv = [*command, "--config", str(config_path), "--json", str(result_path),
                "--events", str(events_path), "--quiet"]
        if cache_dir is not None:
            argv += ["--cache-dir", str(cache_dir)]
        events = EventReader(events_path)
        with open(log_path, "wb") as output:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                preexec_fn=functools.partial(die_with_parent, os.getpid()),
            )
        try:
            while True:
                status = proc.poll()
                for event in events.read():
                    if event.get("kind") == "progress" and on_progress is not None:
                        on_progress(event)
                    elif event.get("kind") in ("curve", "final") and on_curve is not None:
                        if event["kind"] == "final":  # the full evaluation closes the curve
                            event = {**event, "frac": 1.0}
                        # Once the child has finished its result stands; only report the point.
                        if on_curve(event) and status is None:
                            stop(proc)
                            frac = float(event.get("frac", math.nan))
                            return Outcome("pruned", reason=f"pruned at {frac:.0%} of the budget",
                                           seconds=time.monotonic() - start)
                if status is not None:
                    break
                if on_tick is not None:
                    on_tick()
                time.sleep(POLL_S)
        except BaseException:
            stop(proc)
            raise
        outcome = _outcome(status, result_path, log_path)
    return dataclasses.replace(outcome, seconds=time.monotonic() - start)


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


class EventReader:
    """Reads the complete JSON lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                log.debug("skipping a malformed event line: %r", line[:200])
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the child has not exited within ``STOP_GRACE_S``."""
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
