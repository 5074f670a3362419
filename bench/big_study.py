"""``python -m bench.big_study``: a realistic study of N trials, made without training, to time
the analysis commands on a big study.

    python -m bench.big_study --trials 500 --storage sqlite:///runs/big-500.db

Each trial is what a worker of ``study.run`` records for a complete one of the default sweep on
a 2-core CPU: its sampled parameters and config, every user attribute the analysis reads
(``study.result.trial_attrs`` of a ``TrainResult``, the machine load, the worker stamp), its loss
curve at the default curve points (harness rows and Optuna's intermediate values) and a sample;
the study carries its terms (budget, corpus, held-out digest, sweep, search space, settings).
The numbers follow known laws, with noise: tokens per second T = c N^-k and held-out loss
L(N, D) = E + A / N^alpha + B / D^beta (nats per token). One trial in ``--fail-every`` fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import math
import random
import sys
from typing import TYPE_CHECKING, Any

from study.cli import ArgumentParser
from study.config import FixedTerms, TrainConfig
from study.errors import UsageError, cli_main

if TYPE_CHECKING:
    import optuna

    from study.result import TrainResult

THROUGHPUT = (3.17e8, 0.7)  # c, k: tokens/s of the 2-core CPU against total parameters
LAW = {"E": 1.2, "A": 60.0, "alpha": 0.3, "B": 100.0, "beta": 0.3}
UNIQUE_TOKENS = 5_370_229  # the bundled sample's training tokens
BYTES_PER_TOKEN = 4.1
DEVICE_NAME = "cpu x86_64 (AMD EPYC 7B13, 2 threads)"
STORY = (
    "Once upon a time, there was a little girl named Lily. She loved to play in the park "
    "with her red ball. One day she saw a big dog near the swings, and the dog wanted to play too."
)


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m bench.big_study", description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=500, help="trials to make (default 500)")
    p.add_argument("--storage", required=True, metavar="URL", help="a new or empty study database")
    p.add_argument("--study-name", default=None, help="(default big-<trials>)")
    p.add_argument("--budget", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--data", default="sample", help="the corpus the configs name (default sample)")
    p.add_argument("--fail-every", type=int, default=25, metavar="K", help="(default 25)")
    p.add_argument("--seed", type=int, default=0, help="(default 0)")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.trials <= 100_000:
        raise UsageError(f"--trials must be 1 to 100000, got {args.trials}")
    if args.fail_every < 2:
        raise UsageError(f"--fail-every must be at least 2, got {args.fail_every}")
    name = args.study_name or f"big-{args.trials}"
    made = make_study(
        args.storage,
        study_name=name,
        trials=args.trials,
        budget=args.budget,
        data=args.data,
        fail_every=args.fail_every,
        seed=args.seed,
    )
    print(f"made study {name!r} with {made} trials in {args.storage}")
    return 0


def make_study(
    storage: str,
    *,
    study_name: str,
    trials: int,
    budget: float = 300.0,
    data: str | None = "sample",
    fail_every: int = 25,
    seed: int = 0,
) -> int:
    """Make ``study_name`` at ``storage`` holding ``trials`` trials (see the module docstring).
    Returns the number made.

    Raises:
        UsageError: the storage cannot be opened, or already holds a study of that name.
    """
    import optuna

    from study.orchestra.optuna_setup import quiet_optuna
    from study.storage import store
    from study.storage.optuna_store import SharedStudy

    quiet_optuna()
    if store.inspect_storage(storage, study_name).study_exists:
        raise UsageError(f"{store.safe_url(storage)} already holds a study {study_name!r}")
    shared = SharedStudy.create(storage, study_name)
    fixed = FixedTerms(budget=budget, data=data, device="cpu", seed=0, max_stories=27_283)
    for key, value in study_terms(fixed).items():
        shared.tag(key, value)
    rng = random.Random(seed)
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(trials):
        frozen, result = synthetic_trial(sampler.ask(), fixed, rng=rng, failed=i % fail_every == 1)
        took = dt.timedelta(seconds=budget + 35.0 * rng.uniform(0.8, 1.2))
        frozen.datetime_start, frozen.datetime_complete = start, start + took
        start += took
        shared.study.add_trial(frozen)
        if result is not None:
            store.write_trial_rows(
                shared.engine,
                trial_id=shared.trial_id(i),
                study_name=study_name,
                trial_number=i,
                result=result,
            )
    shared.storage.engine.dispose()
    return trials


def study_terms(fixed: FixedTerms) -> dict[str, Any]:
    """The terms ``study.run`` records on a study of the default sweep (its comparability)."""
    from study.orchestra.runner import probe_config
    from sweeps import load_sweep

    probe, space, _, settings = probe_config(load_sweep("default"), fixed)
    corpus = hashlib.sha256(f"corpus {fixed.data}".encode()).hexdigest()
    return {
        "budget": fixed.budget,
        "corpus": corpus,
        "heldout": hashlib.sha256(f"held-out {corpus}".encode()).hexdigest(),
        "max_stories": fixed.max_stories,
        "eval_tokens": probe.eval_tokens,
        "sweep": "default",
        "search_space": space,
        "settings": settings,
    }


def synthetic_trial(
    trial: optuna.Trial, fixed: FixedTerms, *, rng: random.Random, failed: bool
) -> tuple[optuna.trial.FrozenTrial, TrainResult | None]:
    """One trial of the default sweep as a worker records it: a FrozenTrial to add, and the
    TrainResult whose curve and sample are its harness rows (None for a failed trial)."""
    import optuna

    from study.result import trial_attrs
    from study.storage.schema import curve_step
    from sweeps import load_sweep

    config = load_sweep("default").build(trial, fixed)
    stamp: dict[str, Any] = {
        "worker": {"host": "bench", "boot": "", "pid": 1000 + trial.number, "start": "1"},
        "heartbeat": 1.8e9 + trial.number * 335.0,
    }
    if failed:
        attrs = {"config": config.to_dict(), "fail_reason": "diverged: loss became nan at step 12"}
        return (
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.FAIL,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={**attrs, **stamp},
            ),
            None,
        )
    result = synthetic_result(config, rng=rng)
    steps = {
        curve_step(i + 1, budget=config.budget, curve_points=config.curve_points): math.exp(
            float(point["val_loss"] or 0.0)
        )
        for i, point in enumerate(result.curve)
    }
    attrs = {**trial_attrs(result), **load_attrs(rng), **stamp}
    frozen = optuna.trial.create_trial(
        params=trial.params,
        distributions=trial.distributions,
        value=result.val_ppl,
        user_attrs=attrs,
        intermediate_values=steps,
    )
    return frozen, result


def synthetic_result(config: TrainConfig, *, rng: random.Random) -> TrainResult:
    """What ``study.train`` would report for ``config`` on the 2-core CPU, from the laws."""
    from study.models import count_params
    from study.result import TrainResult

    counts = count_params(config.model)
    n = counts.total
    rate = THROUGHPUT[0] * n ** -THROUGHPUT[1] * math.exp(rng.gauss(0, 0.05))
    seen = int(rate * config.budget)
    loss = _law(n, seen) * math.exp(rng.gauss(0, 0.01))
    curve = []
    for i in range(1, config.curve_points + 1):
        tokens = seen * i // config.curve_points
        point = loss if i == config.curve_points else _law(n, tokens) * math.exp(rng.gauss(0, 0.01))
        curve.append(
            {
                "elapsed_s": config.budget * i / config.curve_points,
                "tokens": tokens,
                "train_loss": point * 0.98,
                "val_loss": point,
                "eval_tokens": config.eval_tokens,
            }
        )
    batch = 32
    return TrainResult(
        config=config.to_dict(),
        val_loss=loss,
        val_ppl=math.exp(loss),
        val_bpb=loss / (math.log(2) * BYTES_PER_TOKEN),
        params=n,
        params_nonembedding=counts.nonembedding,
        flops_per_token=counts.flops_per_token,
        tokens_seen=seen,
        tokens_per_second=rate,
        train_seconds=config.budget,
        steps=max(1, seen // (batch * config.model.seq_len)),
        epochs=seen / UNIQUE_TOKENS,
        batch_size=batch,
        device="cpu",
        device_name=DEVICE_NAME,
        versions={"python": "3.11.7", "torch": "2.13.0", "numpy": "2.2.0", "study": "0.1.0"},
        sample=STORY,
        curve=curve,  # type: ignore[arg-type]
        unique_tokens=UNIQUE_TOKENS,
        eval_tokens=config.eval_tokens,
        eval_seconds=11.0 * rng.uniform(0.8, 1.2),
        compile_seconds=0.0,
        outside_seconds=35.0 * rng.uniform(0.8, 1.2),
    )


def load_attrs(rng: random.Random) -> dict[str, Any]:
    """A loaded 2-core machine's readings (``study.orchestra.machine_load.LOAD_ATTRS``)."""
    load = rng.uniform(1.5, 4.5)
    return {
        "load_avg_1m": load,
        "load_avg_5m": load * 0.95,
        "load_avg_15m": load * 0.9,
        "cpu_count": 2,
        "child_cpu_share": rng.uniform(0.4, 0.95),
    }


def _law(n: float, d: float) -> float:
    return LAW["E"] + LAW["A"] / n ** LAW["alpha"] + LAW["B"] / max(d, 1.0) ** LAW["beta"]


if __name__ == "__main__":
    sys.exit(main())
