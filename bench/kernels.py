"""``python -m bench.kernels``: device time of the fused head's pieces, per kernel configuration.

    python -m bench.kernels --rows 65536 --d-model 128,160     # CUDA with Triton only

For one chunk of the head (``--rows`` x vocab logits at each d_model): the cuBLAS logits and the
two gradient products, the compiled PyTorch softmax gradient, and every configuration of the
Triton row kernel and fused kernel of ``study.models.triton_ce`` listed here, as median milliseconds
(``triton.testing.do_bench``). What picks ``ROWS_CONFIG`` and ``FUSED_CONFIG``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import partial

import torch

from study.cli import ArgumentParser
from study.errors import UsageError, cli_main
from study.models.loss import softmax_grad_fusable, triton_ready

ROWS_CONFIGS = [(1, 8), (1, 4), (2, 8), (4, 8), (4, 16)]
FUSED_CONFIGS = [
    (128, 128, 8, 3),
    (128, 64, 8, 3),
    (64, 128, 4, 3),
    (64, 64, 4, 3),
    (128, 128, 8, 2),
    (64, 128, 8, 3),
    (64, 256, 8, 2),
]


def timings(*, rows: int, d: int, vocab: int) -> dict[str, float]:
    """Median milliseconds of each piece at one shape (bf16, fresh random inputs)."""
    import triton.testing

    from study.models import triton_ce

    h = torch.randn(rows, d, device="cuda").to(torch.bfloat16)
    w = (torch.randn(vocab, d, device="cuda") * 0.05).to(torch.bfloat16)
    t = torch.randint(0, vocab, (rows,), device="cuda")
    logits = h @ w.t()
    compiled = torch.compile(softmax_grad_fusable, dynamic=False)
    cases: dict[str, Callable[[], object]] = {
        "cublas logits h@w.T": lambda: h @ w.t(),
        "cublas dH g@w": lambda: logits @ w,
        "cublas dW g.T@h": lambda: logits.t() @ h,
        "torch compiled softmax grad": lambda: compiled(logits, t),
    }
    for c in ROWS_CONFIGS:
        cases[f"rows {c}"] = partial(triton_ce.softmax_grad_rows, logits, t, c)
    for f in FUSED_CONFIGS:
        cases[f"fused {f}"] = partial(triton_ce.linear_softmax_grad, h, w, t, f)
    out: dict[str, float] = {}
    for name, fn in cases.items():
        try:
            out[name] = float(triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median"))
        except Exception as exc:  # a configuration the compiler or the chip refuses
            print(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
    return out


@cli_main
def main(argv: list[str] | None = None) -> int:
    p: argparse.ArgumentParser = ArgumentParser(prog="python -m bench.kernels")
    p.add_argument("--rows", type=int, default=65536)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--d-model", default="128,160", help="comma-separated widths")
    args = p.parse_args(argv)
    if not triton_ready(torch.device("cuda")) or not torch.cuda.is_available():
        raise UsageError("python -m bench.kernels needs a CUDA device and Triton")
    widths = [int(x) for x in args.d_model.split(",") if x]
    table = {d: timings(rows=args.rows, d=d, vocab=args.vocab) for d in widths}
    print(f"{'ms':34}" + "".join(f"{'d ' + str(d):>10}" for d in widths))
    for name in table[widths[0]]:
        print(f"{name:34}" + "".join(f"{table[d].get(name, float('nan')):10.3f}" for d in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
