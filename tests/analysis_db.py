"""A small study database built with Optuna's own API, for the analysis tests.

The database holds what the study runner stores: complete trials with every user attribute in
``study.result.TRIAL_ATTRS``, a failed trial with its reason, and rows in the harness tables. Its
numbers follow known laws (tokens/s = c N^-k per device, loss = E + A/N^alpha + B/D^beta), so
the commands' answers can be checked.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from study.config import ModelConfig, TrainConfig
from study.result import TRIAL_ATTRS

REPO = Path(__file__).resolve().parents[1]
BUDGET = 300.0
DEVICES = {  # label -> (device, c, k, sizes used)
    "cpu (2 threads)": ("cpu", 3.17e8, 0.7, None),
    "NVIDIA H100 80GB HBM3": ("cuda", 5.0e10, 0.55, 6),
}
LAW = {"E": 1.2, "A": 60.0, "alpha": 0.3, "B": 100.0, "beta": 0.3}


def law_loss(n: float, d: float) -> float:
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / d ** LAW["beta"]


def count_params(m: ModelConfig) -> tuple[int, int]:
    d = m.d_model
    hidden = (8 * d) // 3 if m.mlp == "swiglu" else 4 * d
    mlp = (3 if m.mlp == "swiglu" else 2) * d * hidden
    body = m.n_layer * (4 * d * d + mlp + 2 * d) + d
    emb = m.vocab_size * d + (m.seq_len * d if m.pos == "learned" else 0)
    return emb + body, body


def make_study_db(path: Path, *, study_name: str = "cpu-300s", seed: int = 0) -> Path:
    """An SQLite file at ``path`` holding :func:`populate_study`'s study."""
    populate_study(url(path), study_name=study_name, seed=seed)
    return path


def populate_study(storage: str, *, study_name: str, seed: int = 0) -> None:
    """A study with 18 CPU trials, 6 GPU trials and one failed trial, and its harness rows."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rng = np.random.default_rng(seed)
    study = optuna.create_study(study_name=study_name, storage=storage, direction="minimize")
    dists = {
        "lr": FloatDistribution(1e-4, 1e-2, log=True),
        "pos": CategoricalDistribution(["learned", "rope"]),
    }
    shapes = [(d, layers) for d in (64, 96, 128, 192, 256, 384) for layers in (2, 4, 6)]
    jobs = [(label, shape) for label in DEVICES for shape in shapes[: DEVICES[label][3]]]
    curves: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    for i, (label, (d_model, n_layer)) in enumerate(jobs):
        attrs = trial_attrs(i, label, d_model=d_model, n_layer=n_layer, seed=seed, rng=rng)
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": attrs["lr"], "pos": attrs["pos"]},
                distributions=dists,
                value=attrs["val_ppl"],
                user_attrs=attrs,
            )
        )
        for j, frac in enumerate((0.2, 0.4, 0.6, 0.8, 1.0)):
            seen = int(attrs["tokens_seen"] * frac)
            point = law_loss(attrs["params"], seen) * math.exp(rng.normal(0, 0.005))
            curves.append(
                {
                    "idx": j,
                    "trial_number": i,
                    "elapsed_s": BUDGET * frac,
                    "tokens": seen,
                    "train_loss": point * 0.98,
                    "val_loss": None if (i == 3 and j == 2) else point,
                }
            )
        samples.append(
            {
                "trial_number": i,
                "prompt": "Once upon a time",
                "text": f"Once upon a time, model {i} said <b>hi</b> & left.\n"
                "<|endoftext|>\nOne day a second story began",
            }
        )
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.FAIL,
            params={"lr": 0.009, "pos": "rope"},
            distributions=dists,
            user_attrs={"fail_reason": "diverged: loss became nan at step 12", "budget": BUDGET},
        )
    )
    write_harness_rows(storage, study_name=study_name, curves=curves, samples=samples)


def trial_attrs(
    i: int, label: str, *, d_model: int, n_layer: int, seed: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Trial ``i``'s user attributes as the runner stores them, its tokens/s and loss drawn
    from the device's throughput law and the loss law."""
    device, c, k, _ = DEVICES[label]
    pos = ("learned", "rope")[i % 2]
    mlp = ("swiglu", "gelu")[(i // 2) % 2]
    lr = float(10 ** rng.uniform(-3.5, -2.5))
    config = TrainConfig(
        model=ModelConfig(n_layer=n_layer, d_model=d_model, n_head=4, pos=pos, mlp=mlp),
        budget=BUDGET,
        device=device,
        lr=lr,
        batch_size=32,
        seed=seed,
    )
    params, params_ne = count_params(config.model)
    tps = c * params**-k * math.exp(rng.normal(0, 0.03))
    tokens = int(tps * BUDGET)
    val_loss = law_loss(params, tokens) * math.exp(rng.normal(0, 0.005))
    attrs = {
        "config": config.to_dict(),
        "arch": "gpt",
        "n_layer": n_layer,
        "d_model": d_model,
        "n_head": 4,
        "pos": pos,
        "mlp": mlp,
        "lr": lr,
        "batch_size": 32,
        "budget": BUDGET,
        "params": params,
        "params_nonembedding": params_ne,
        "flops_per_token": 6 * params,
        "tokens_seen": tokens,
        "tokens_per_second": tps,
        "train_seconds": BUDGET,
        "steps": tokens // (32 * 256),
        "epochs": tokens / 5.3e6,
        "unique_tokens": 5_300_000,
        "eval_tokens": 65_536,
        "eval_seconds": 4.0,
        "compile_seconds": 0.0,
        "outside_seconds": 3.0,
        "val_loss": val_loss,
        "val_ppl": math.exp(val_loss),
        "val_bpb": val_loss / math.log(2) / 4.1,
        "val_is_bound": False,
        "device": device,
        "device_name": label,
        "versions": {"python": "3.11", "torch": "2.13.0", "study": "0.1.0"},
        "seed": seed,
    }
    assert set(attrs) == set(TRIAL_ATTRS)
    return attrs


def write_harness_rows(
    storage: str, *, study_name: str, curves: list[dict[str, Any]], samples: list[dict[str, Any]]
) -> None:
    """The harness tables and their rows for ``study_name``, keyed by Optuna's trial ids."""
    import optuna
    import sqlalchemy as sa

    from study.storage import schema

    rdb = optuna.storages.RDBStorage(storage)
    study_id = rdb.get_study_id_from_name(study_name)
    numbers = {int(row["trial_number"]) for row in [*curves, *samples]}
    ids = {n: rdb.get_trial_id_from_study_id_trial_number(study_id, n) for n in numbers}
    rdb.engine.dispose()
    engine = sa.create_engine(storage)
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.execute(sa.select(schema.meta.c.key)).first() is None:
            conn.execute(
                sa.insert(schema.meta),
                [{"key": "schema_version", "value": str(schema.SCHEMA_VERSION)}],
            )
        for table, rows in ((schema.curve, curves), (schema.sample, samples)):
            conn.execute(
                sa.insert(table),
                [
                    {**row, "trial_id": ids[int(row["trial_number"])], "study_name": study_name}
                    for row in rows
                ],
            )
    engine.dispose()


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module`` the way a user would (fresh interpreter)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        env=env,
        timeout=300,
    )
