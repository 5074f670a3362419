"""The head's Triton kernels (study.models.triton_ce, chosen by study.models.loss.head_kernels) compute
what PyTorch does: against float64 references on fresh random inputs on a GPU (``-m gpu``), and
off CUDA every kind falls back to PyTorch."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from study.config import ModelConfig, TrainConfig
from study.models import build_model
from study.models.loss import (
    CE_KERNELS,
    CeKernel,
    compile_head_behind,
    cuda_ce_kernel,
    head_kernels,
    linear_cross_entropy,
    softmax_grad_eager,
    triton_ready,
)
from study.training.plan import plan_step
from study.training.step import make_loss

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_the_head_is_compiled_ahead_only_where_a_triton_kernel_runs() -> None:
    """Off CUDA no thread starts (PyTorch's kernels compile nothing ahead); nor for a compiled
    softmax gradient on any device (Dynamo must not run in a second thread)."""

    def behind(kernels: tuple[Any, Any], device: torch.device) -> object:
        return compile_head_behind(
            *kernels, rows=512, d_model=8, vocab_size=300, dtype=torch.bfloat16, device=device
        )

    cpu = torch.device("cpu")
    for kind in CE_KERNELS:
        assert behind(head_kernels(kind, device=cpu, vocab_size=300, compile=False), cpu) is None
    compiled = torch.compile(softmax_grad_eager)  # lazy: compiles nothing here
    assert behind((compiled, None), torch.device("cuda")) is None


@pytest.mark.parametrize("kind", CE_KERNELS)
def test_every_kind_falls_back_to_pytorch_off_cuda(kind: CeKernel) -> None:
    softmax_grad, logits_grad = head_kernels(
        kind,
        device=torch.device("cpu"),
        vocab_size=300,
        compile=False,
    )
    assert softmax_grad is softmax_grad_eager and logits_grad is None
    torch.manual_seed(0)
    h = torch.randn(20, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(300, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 300, (20,))
    out = linear_cross_entropy(h, w, t, chunk=7, softmax_grad=softmax_grad, logits_grad=logits_grad)
    torch.testing.assert_close(out, F.cross_entropy(h @ w.t(), t).float(), check_dtype=False)


def test_cuda_plan_picks_the_fused_kernel_only_where_it_was_faster() -> None:
    assert cuda_ce_kernel(d_model=64) == cuda_ce_kernel(d_model=128) == "fused"
    assert cuda_ce_kernel(d_model=160) == cuda_ce_kernel(d_model=384) == "rows"
    mc = ModelConfig(n_layer=1, d_model=128, n_head=4, vocab_size=300, seq_len=16)
    model = build_model(mc)
    cuda = torch.device("cuda")
    plan = plan_step(TrainConfig(model=mc, device="cuda", batch_size=4), cuda, model)
    assert plan.ce_kernel == ("fused" if triton_ready(cuda) else "torch")
    cpu = plan_step(TrainConfig(model=mc, device="cpu", batch_size=4), torch.device("cpu"), model)
    assert cpu.ce_kernel == "torch" and "fused-ce/" in cpu.describe()


def _reference(h: torch.Tensor, w: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = h.double() @ w.double().t()
    nll = torch.logsumexp(x, 1) - x.gather(1, t[:, None]).squeeze(1)
    return torch.softmax(x, 1) - F.one_hot(t, w.size(0)).double(), nll


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert torch.isfinite(a).all()
    return float((a.double() - b).norm() / b.norm())


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("n", "d", "v"), [(300, 160, 1000), (1024, 128, 4096), (77, 384, 515)])
def test_triton_kernels_match_float64(n: int, d: int, v: int, dtype: torch.dtype) -> None:
    from study.models import triton_ce

    h = torch.randn(n, d, device="cuda").to(dtype)
    w = (torch.randn(v, d, device="cuda") * 0.2).to(dtype)
    t = torch.randint(0, v, (n,), device="cuda")
    ref_g, ref_nll = _reference(h, w, t)
    g, nll = triton_ce.linear_softmax_grad(h, w, t)
    assert g.dtype == dtype and nll.dtype == torch.float32
    assert _rel(g, ref_g) < 1e-2 and _rel(nll, ref_nll) < 1e-4
    logits = (h @ w.t()).contiguous()
    g2, nll2 = triton_ce.softmax_grad_rows(logits, t)
    assert g2.data_ptr() == logits.data_ptr()  # written over the logits
    assert _rel(g2, ref_g) < 2e-2 and _rel(nll2, ref_nll) < 1e-2


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("kind", CE_KERNELS)
def test_fast_step_loss_and_gradients_match_the_plain_model(kind: str) -> None:
    """The trainer's CUDA loss (compiled trunk, bf16, fused head with each kernel) against the
    plain model's ``loss`` in float32: the same loss and gradients up to bf16 rounding."""
    mc = ModelConfig(n_layer=2, d_model=96, n_head=3, vocab_size=1000, seq_len=64)
    config = TrainConfig(model=mc, device="cuda", batch_size=8)
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = build_model(mc).to(device)
    plain = copy.deepcopy(model)
    x, y = torch.randint(0, 1000, (2, 8, 64), device=device)
    ref = plain.loss(x, y)
    ref_grads = torch.autograd.grad(ref, list(plain.parameters()))
    plan = plan_step(config, device, model)
    assert plan.ce_chunk and plan.autocast is torch.bfloat16
    plan = type(plan)(**{**plan.__dict__, "ce_kernel": kind, "ce_chunk": 100})
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = make_loss(model, plan)(x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-2)
    for g, r in zip(grads, ref_grads, strict=True):
        assert _rel(g, r.double()) < 3e-2


def _binaries(kernel: object) -> int:
    """Compiled binaries a Triton JIT kernel holds (skips where this Triton keeps them
    elsewhere)."""
    caches = getattr(kernel, "device_caches", None)
    if not isinstance(caches, dict):
        pytest.skip("this Triton does not keep device_caches")
    return sum(len(entry[0]) for entry in caches.values())


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize(("kind", "rows"), [("fused", 65536), ("fused", 100), ("rows", 4101)])
def test_the_head_compiled_behind_is_the_kernel_the_step_runs(kind: CeKernel, rows: int) -> None:
    """The thread compiles (or loads) the very binary the step's own call then uses: after it
    joins, the step's first call of the kernel on ``rows`` real rows compiles nothing more, and
    the gradient is right."""
    if not triton_ready(torch.device("cuda")):
        pytest.skip("needs Triton")
    from study.models import triton_ce

    device = torch.device("cuda")
    d, v = (128, 4096) if kind == "fused" else (96, 1000)
    softmax_grad, logits_grad = head_kernels(kind, device=device, vocab_size=v, compile=False)
    kernel = (
        triton_ce._linear_softmax_grad_kernel
        if kind == "fused"
        else triton_ce._softmax_grad_rows_kernel
    )
    thread = compile_head_behind(
        softmax_grad,
        logits_grad,
        rows=rows,
        d_model=d,
        vocab_size=v,
        dtype=torch.bfloat16,
        device=device,
    )
    assert thread is not None
    thread.join()
    compiled = _binaries(kernel)
    assert compiled >= 1
    torch.manual_seed(0)
    h = torch.randn(rows, d, device=device, dtype=torch.bfloat16)
    w = torch.randn(v, d, device=device, dtype=torch.bfloat16)
    t = torch.randint(0, v, (rows,), device=device)
    if logits_grad is not None:
        g, nll = logits_grad(h, w, t)
    else:
        g, nll = softmax_grad((h @ w.t()).contiguous(), t)
    assert _binaries(kernel) == compiled
    ref_nll = F.cross_entropy((h @ w.t()).float(), t, reduction="none")
    assert _rel(nll, ref_nll) < 1e-2


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("pos", ["learned", "alibi"])
def test_the_step_attends_without_cudnn(pos: str) -> None:
    """The compiled step's attention is SDPA's flash kernel (efficient attention where a bias is
    added: ALiBi), never cuDNN's, which builds a graph per new shape (study.device.eager_attention)."""
    mc = ModelConfig(n_layer=1, d_model=64, n_head=2, vocab_size=512, seq_len=64, pos=pos)
    config = TrainConfig(model=mc, device="cuda", batch_size=4)
    device = torch.device("cuda")
    model = build_model(mc).to(device)
    plan = plan_step(config, device, model)
    loss_fn = make_loss(model, plan)
    x, y = torch.randint(0, 512, (2, 4, 64), device=device)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss_fn(x, y).backward()  # compiles
    with torch.profiler.profile() as prof:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss_fn(x, y).backward()
        torch.cuda.synchronize()
    names = [e.key.lower() for e in prof.key_averages()]
    attention = [n for n in names if "scaled_dot_product" in n]
    assert attention and not any("cudnn" in n for n in attention), attention
    assert any(("flash" if pos == "learned" else "efficient") in n for n in attention), attention
