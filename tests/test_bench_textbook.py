"""bench.textbook: the textbook GPT-2, its training step and the CUDA-graphed step of column (d).

The graphed step is checked against the plain step on a GPU (``-m gpu``); on a machine without
CUDA that test is skipped and only its refusal of other devices is checked."""

from __future__ import annotations

import math

import pytest
import torch

from bench.run import model_config
from bench.textbook import GraphedStep, TextbookGPT, textbook_optimizer, textbook_step
from study.models import build_model


def small_model() -> TextbookGPT:
    torch.manual_seed(0)
    return TextbookGPT(n_layer=1, d_model=32, n_head=2, vocab_size=64, seq_len=16)


def test_textbook_model_matches_the_trainers_shape() -> None:
    mc = model_config("0.4M")
    torch.manual_seed(0)
    textbook = TextbookGPT(
        n_layer=mc.n_layer,
        d_model=mc.d_model,
        n_head=mc.n_head,
        vocab_size=mc.vocab_size,
        seq_len=mc.seq_len,
    )
    ours = build_model(mc)
    biases = sum(p.numel() for n, p in textbook.named_parameters() if n.endswith("bias"))
    # The same weights but GPT-2's biases (linear and LayerNorm), the embedding tied once.
    assert sum(p.numel() for p in textbook.parameters()) - biases == sum(
        p.numel() for p in ours.parameters()
    )
    assert textbook.lm_head.weight is textbook.wte.weight
    x, y = torch.randint(0, mc.vocab_size, (2, 2, 32))
    loss = textbook(x, y)
    assert loss.item() == pytest.approx(math.log(mc.vocab_size), abs=0.1)  # uniform at init


def test_textbook_step_trains() -> None:
    model = small_model()
    x = torch.randint(0, 64, (8, 16))
    batch = (x, torch.roll(x, -1, dims=1))
    step = textbook_step(model, lambda: batch, device=torch.device("cpu"), lr=1e-2)
    before = model(*batch).item()
    losses = [step().item() for _ in range(20)]
    assert losses[0] == pytest.approx(before)  # each call returns its own step's loss
    assert model(*batch).item() < before - 0.5
    assert all(p.grad is None for p in model.parameters())  # the step zeroes its gradients


def test_optimizer_decays_matrices_only() -> None:
    model = small_model()
    decay, no_decay = textbook_optimizer(model, lr=1e-3).param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"])
    assert all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_graphed_step_refuses_a_device_without_cuda_graphs() -> None:
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device, not cpu"):
        GraphedStep(
            small_model(), lambda: (torch.zeros(1), torch.zeros(1)), device=torch.device("cpu")
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_graphed_step_trains_like_the_plain_step() -> None:
    """Warm-up calls, the capture and every replay each take one optimizer step on the next
    batch, exactly as the ungraphed (c) step does: the losses agree step by step."""
    device = torch.device("cuda")
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(4):
        x = torch.randint(0, 64, (8, 16), generator=gen)
        batches.append((x.to(device), torch.roll(x, -1, dims=1).to(device)))

    def run(make: object, steps: int = 16) -> list[float]:
        calls = iter(range(steps))
        model = small_model().to(device)
        step = make(model, lambda: batches[next(calls) % len(batches)])  # type: ignore[operator]
        return [step().item() for _ in range(steps)]

    graphed = run(lambda m, s: GraphedStep(m, s, device=device, lr=1e-2, warmup=3))
    plain = run(
        lambda m, s: textbook_step(
            m, s, device=device, bf16=True, compile=True, fused=True, lr=1e-2
        )
    )
    assert graphed == pytest.approx(plain, rel=2e-2)
    assert len(set(graphed)) == len(graphed)  # replays see new batches and new weights
    assert sum(graphed[-4:]) / 4 < sum(graphed[:4]) / 4 - 0.3  # and they train
