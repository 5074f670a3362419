"""What each worker process of a run is given: its spec, its sampler's seed, and the devices
or CPU cores its trainer children may use."""

from __future__ import annotations

import os
import socket
import zlib
from typing import TYPE_CHECKING

from study.config import FixedTerms
from study.orchestra.job import compile_cache_env
from study.orchestra.worker import WorkerSpec

if TYPE_CHECKING:
    from study.orchestra.options import RunOptions
    from sweeps import Sweep


def worker_specs(
    opts: RunOptions,
    *,
    study_name: str,
    sweep: Sweep,
    fixed: FixedTerms,
    curve_points: int,
    run_index: int,
) -> list[WorkerSpec]:
    """What each of the run's ``opts.workers`` worker processes is given."""
    return [
        WorkerSpec(
            storage=opts.storage,
            study_name=study_name,
            sweep=sweep.spec,
            fixed=fixed,
            trials=opts.trials,
            max_failures=opts.failure_limit,
            pruner=opts.pruner,
            curve_points=curve_points,
            sampler_seed=sampler_seed(opts.seed, run_index, i),
            cache_dir=opts.cache_dir,
            index=i,
            workers=opts.workers,
            env={
                **compile_cache_env(opts.cache_dir),
                **child_env(i, opts.workers, device=opts.device),
            },
            parent_pid=os.getpid() if opts.workers > 1 else None,
            keep=opts.keep,
            checkpoint_dir=opts.checkpoint_dir,
        )
        for i in range(opts.workers)
    ]


def sampler_seed(seed: int, run_index: int, index: int) -> int:
    """Distinct per worker, per run of the study (resumed or concurrent) and per host, so no two
    workers draw the same sequence; the same for the same run of the same command."""
    host = zlib.crc32(socket.gethostname().encode())
    return int(zlib.crc32(f"{seed}:{run_index}:{index}:{host}".encode()))


def child_env(index: int, workers: int, *, device: str) -> dict[str, str]:
    """Environment overrides for worker ``index``'s trainer children.

    With several workers each gets CUDA device ``index % device_count`` (of those visible), or,
    without CUDA, an equal share of the CPU cores (unless OMP_NUM_THREADS is already set).
    """
    if workers == 1:
        return {}
    if device in ("auto", "cuda"):
        visible = cuda_devices()
        if visible:
            return {"CUDA_VISIBLE_DEVICES": visible[index % len(visible)]}
    if device in ("auto", "cpu") and "OMP_NUM_THREADS" not in os.environ:
        return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // workers))}
    return {}


def cuda_devices() -> list[str]:
    """CUDA device ids this process may use: CUDA_VISIBLE_DEVICES if set, else all."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
