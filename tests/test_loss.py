"""The fused, chunked output projection + cross-entropy (study.models.loss) against
``F.cross_entropy``: loss and gradients, and the evaluation's summed NLL."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from study.models.loss import (
    CUDA_CE_CHUNK_BYTES,
    ce_chunk_rows,
    linear_cross_entropy,
    linear_nll_sum,
    softmax_grad_fusable,
)

V = 300


@pytest.mark.parametrize("softmax_grad", [None, softmax_grad_fusable])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_linear_cross_entropy_matches_cross_entropy(chunk: int, softmax_grad: object) -> None:
    torch.manual_seed(0)
    h = torch.randn(50, 24, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, 24, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, V, (50,))
    ref = F.cross_entropy(h @ w.t(), t)
    ref_h, ref_w = torch.autograd.grad(3 * ref, (h, w))
    kw = {} if softmax_grad is None else {"softmax_grad": softmax_grad}
    out = linear_cross_entropy(h, w, t, chunk=chunk, **kw)  # type: ignore[arg-type]
    got_h, got_w = torch.autograd.grad(3 * out, (h, w))
    torch.testing.assert_close(out, ref.float(), rtol=1e-6, atol=1e-6, check_dtype=False)
    torch.testing.assert_close(got_h, ref_h, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got_w, ref_w.float(), rtol=1e-5, atol=1e-6, check_dtype=False)
    total = linear_nll_sum(h.detach(), w.detach(), t, chunk=chunk)
    assert total.item() == pytest.approx(50 * ref.item(), rel=1e-6)


def test_chunk_rows_per_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert ce_chunk_rows(cpu, vocab_size=4096, half=False) == 2 * 2**20 // (4096 * 4)
    assert ce_chunk_rows(cpu, vocab_size=4096, half=True) == 2 * 2**20 // (4096 * 2)
    assert ce_chunk_rows(cuda, vocab_size=4096, half=True) == CUDA_CE_CHUNK_BYTES // (4096 * 2)
    assert ce_chunk_rows(cpu, vocab_size=2**20, half=False) == 16  # never fewer rows
