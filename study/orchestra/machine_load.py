"""How loaded the machine was while a trial trained, stored with the trial so that throughput
noise (another process on the cores) can be told from seed noise.

``os.getloadavg`` after the trial (1, 5 and 15 minute averages: the 5-minute one spans a
five-minute trial) and the CPU share of the trial's child: its CPU seconds (user + system, from
``os.times`` of waited-for children) over wall seconds x cores. A warm child started before the
trial counts its start-up too, so the share is a rough reading, not a profile.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

LOAD_ATTRS = ("load_avg_1m", "load_avg_5m", "load_avg_15m", "cpu_count", "child_cpu_share")


@dataclass(frozen=True)
class LoadMeter:
    """Readings at a trial's start; :meth:`attrs` at its end."""

    wall: float
    child_cpu: float

    @classmethod
    def start(cls) -> LoadMeter:
        return cls(time.monotonic(), _child_cpu())

    def attrs(self) -> dict[str, Any]:
        """The trial's load attributes (``LOAD_ATTRS``); None where the platform has none."""
        wall = time.monotonic() - self.wall
        cores = os.cpu_count() or 1
        try:
            one, five, fifteen = os.getloadavg()
        except OSError:  # not every platform keeps load averages
            one = five = fifteen = None  # type: ignore[assignment]
        share = (_child_cpu() - self.child_cpu) / (wall * cores) if wall > 0 else None
        return {
            "load_avg_1m": one,
            "load_avg_5m": five,
            "load_avg_15m": fifteen,
            "cpu_count": cores,
            "child_cpu_share": share,
        }


def _child_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system
