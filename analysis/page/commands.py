"""The commands a report prints: its own, and one per figure or table that reproduces a part."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

_PY = ["python", "-m"]


def report_commands(
    *,
    storage: str,
    study_name: str,
    budget: float | None,
    ratio: float,
    out: str,
    devices: Sequence[str] = ("DEVICE",),
    color_by: str | None = None,
) -> list[str]:
    """The report's own command and the per-figure commands that reproduce its parts."""
    coloured = [] if color_by is None else ["--color-by", color_by]
    base = ["--storage", storage, "--study-name", study_name]
    extra = (["--budget", f"{budget:g}"] if budget is not None else []) + (
        ["--ratio", f"{ratio:g}"] if ratio != 20.0 else []
    )
    return [
        shlex.join(_PY + ["analysis.report", *base, *extra, *coloured, "--out", out]),
        shlex.join(_PY + ["analysis.frontier", *base, *extra, "--plot", "frontier.png"]),
        *(
            [
                shlex.join(
                    _PY
                    + [
                        "analysis.frontier",
                        *base,
                        *extra,
                        *coloured,
                        "--plot",
                        "frontier_colored.png",
                    ]
                )
            ]
            if coloured
            else []
        ),
        shlex.join(
            _PY
            + ["analysis.frontier", *base, *extra, "--metric", "bpb", "--plot", "frontier_bpb.png"]
        ),
        *_crossover_commands(base, extra, devices),
        shlex.join(
            _PY
            + [
                "analysis.scaling_law",
                *base,
                *extra,
                "--json",
                "loss_law.json",
                "--plot",
                "loss_law.png",
            ]
        ),
        shlex.join(_PY + ["analysis.curves", *base, "--plot", "curves.png"]),
        _predict_command(base, budget),
        shlex.join(_PY + ["analysis.trials", *base, "--csv", "trials.csv"]),
    ]


def _crossover_commands(base: list[str], extra: list[str], devices: Sequence[str]) -> list[str]:
    """One ``analysis.crossover`` command per device, its files numbered in device order."""
    return [
        shlex.join(
            _PY
            + [
                "analysis.crossover",
                *base,
                *extra,
                "--device",
                device,
                "--plot",
                f"crossover_{i}.png",
                "--json",
                f"crossover_{i}.json",
            ]
        )
        for i, device in enumerate(devices)
    ]


def _predict_command(base: list[str], budget: float | None) -> str:
    """``analysis.predict`` takes the budget but has no ``--ratio`` option."""
    return shlex.join(
        _PY
        + [
            "analysis.predict",
            *base,
            *(["--budget", f"{budget:g}"] if budget is not None else []),
            "--json",
            "predict.json",
        ]
    )
