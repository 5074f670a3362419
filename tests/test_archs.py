"""The LSTM and masked-diffusion models, their counts, the diffusion bound, and the arch sweeps."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from study.config import ModelConfig, TrainConfig
from study.errors import UsageError
from study.models import build_model, count_params
from study.models.diffusion import DiffusionLM, random_masks
from study.training.evaluate import evaluate
from study.training.trainer import train

V = 300  # small vocabulary for model-level tests


def small(arch: str, **changes: object) -> ModelConfig:
    base = ModelConfig(
        arch=arch, n_layer=2, d_model=32, n_head=4, pos="rope", vocab_size=V, seq_len=16
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- counting


@pytest.mark.parametrize("arch", ["lstm", "diffusion"])
@pytest.mark.slow
def test_param_count_matches_numel(arch: str) -> None:
    config = small(arch, pos="learned")
    model = build_model(config)
    counts = count_params(config, model)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.total == counts.embedding + counts.nonembedding
    assert count_params(config) == counts  # the meta-device count agrees
    d = config.d_model
    if arch == "lstm":
        assert counts.embedding == V * d  # tied head counted once
        # 4 gates x (input weights + recurrent weights + two biases) per layer, plus ln_f.
        assert counts.nonembedding == 2 * 4 * (d * d + d * d + 2 * d) + d
        assert counts.flops_per_token == 6 * (counts.nonembedding + V * d)  # no attention term
    else:
        assert counts.embedding == (V + 1) * d + config.seq_len * d  # [MASK] row, positions
        assert counts.flops_per_token == 6 * (counts.nonembedding + V * d) + 12 * 2 * d * 16


@pytest.mark.slow
def test_diffusion_matches_gpt_apart_from_mask_row() -> None:
    gpt, diffusion = count_params(small("gpt")), count_params(small("diffusion"))
    assert diffusion.nonembedding == gpt.nonembedding
    assert diffusion.total == gpt.total + 32


def test_diffusion_without_positions_is_refused() -> None:
    with pytest.raises(UsageError, match="diffusion"):
        small("diffusion", pos="none").validate()


# ----------------------------------------------------------------------------- behaviour


def test_lstm_is_causal() -> None:
    torch.manual_seed(0)
    model = build_model(small("lstm")).train(False)  # eval(), through the protocol
    x = torch.randint(0, V, (2, 16))
    changed = x.clone()
    changed[:, 10] = (changed[:, 10] + 1) % V
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert a.shape == (2, 16, V)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi"])
def test_diffusion_is_bidirectional_and_order_aware(pos: str) -> None:
    torch.manual_seed(0)
    model = build_model(small("diffusion", pos=pos)).train(False)  # eval(), through the protocol
    x = torch.randint(0, V, (1, 16))
    later = x.clone()
    later[:, 12] = (later[:, 12] + 1) % V
    swapped = x.clone()
    swapped[:, [3, 4]] = x[:, [4, 3]]
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (1, 16, V)  # never predicts [MASK]
        assert not torch.allclose(logits[:, :12], model(later)[:, :12])  # sees the future
        assert not torch.allclose(logits[:, 0], model(swapped)[:, 0])  # sees order


def test_random_masks_stratify_k() -> None:
    generator = torch.Generator().manual_seed(0)
    k, mask = random_masks(8, 16, device=torch.device("cpu"), generator=generator)
    assert mask.sum(dim=1).tolist() == k.long().tolist()
    # Stratified: one k in each eighth of 1..16.
    assert sorted(((k - 1) // 2).long().tolist()) == list(range(8))
    counts = torch.zeros(17)
    for _ in range(400):  # each row's k on its own is uniform on 1..T
        k, _ = random_masks(4, 16, device=torch.device("cpu"), generator=generator)
        counts[k[0].long()] += 1
    assert counts[0] == 0 and counts[1:].min() > 0


def test_diffusion_training_loss_is_masked_nll_over_k() -> None:
    torch.manual_seed(0)
    model = build_model(small("diffusion"))
    assert isinstance(model, DiffusionLM)
    x = torch.randint(0, V, (4, 16))
    torch.manual_seed(1)
    loss = model.loss(x, x)
    torch.manual_seed(1)
    nll, k = model.masked_nll(x)
    torch.testing.assert_close(loss, (nll / k).mean())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("arch", ["lstm", "diffusion"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.slow
def test_half_precision_autocast(arch: str, dtype: torch.dtype) -> None:
    """--precision bf16/fp16 run the models under autocast (fp16 LSTM on CPU: float32 inside)."""
    torch.manual_seed(0)
    model = build_model(small(arch))
    x = torch.randint(0, V, (2, 16))
    reference = model.loss(x, x).item() if arch == "lstm" else None
    with torch.autocast("cpu", dtype=dtype):
        loss = model.loss(x, x)
    loss.backward()
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    if reference is not None:
        assert loss.item() == pytest.approx(reference, rel=2e-2)


@pytest.mark.slow
def test_diffusion_learns_to_use_context() -> None:
    """Rows that repeat one uniformly drawn token: without looking at the unmasked positions
    the loss stays at ln V; a working denoiser copies them (floor ln V / T, the all-masked rows)."""
    torch.manual_seed(0)
    model = build_model(small("diffusion", pos="learned", seq_len=8, n_layer=1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        x = torch.randint(0, V, (16, 1)).repeat(1, 8)
        loss = model.loss(x, x)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert sum(losses[:10]) / 10 > 0.95 * math.log(V)
    assert sum(losses[-10:]) / 10 < 0.6 * math.log(V)


# ----------------------------------------------------------------------------- the bound


def uniform_diffusion(config: ModelConfig) -> DiffusionLM:
    """A diffusion model whose predictions are exactly uniform (zero final norm gain)."""
    model = build_model(config)
    assert isinstance(model, DiffusionLM)
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()  # type: ignore[operator]
    return model


@pytest.mark.slow
def test_bound_of_uniform_model_is_its_exact_nll() -> None:
    """Uniform predictions: p(y) = V^-T exactly, and the bound is at least (here equal to) it."""
    config = small("diffusion")
    model = uniform_diffusion(config)
    y = torch.randint(0, V, (5, 16))
    exact = 5 * 16 * math.log(V)
    with torch.no_grad():
        bound = model.nll_sum(y, y).item()
    assert bound >= exact - 1e-6 * exact
    assert bound == pytest.approx(exact, rel=1e-6)
    # Through the trainer's evaluation: flagged as a bound, ln V per token.
    windows = torch.randint(0, V, (6, 17))
    loss, _ = evaluate(model, windows, token_bytes=torch.ones(V), batch_size=4, amp=nullcontext)
    assert loss == pytest.approx(math.log(V), rel=1e-6)
    assert model.nll_is_bound


def exact_bound(model: DiffusionLM, y: torch.Tensor) -> float:
    """sum_k 1/k E_{|M|=k} sum_{i in M} -log p(y_i | y_~M), every mask set enumerated."""
    T = y.numel()
    total = 0.0
    for k in range(1, T + 1):
        sets = list(itertools.combinations(range(T), k))
        for masked in sets:
            z = y.clone()
            z[list(masked)] = model.mask_id
            logp = model(z[None])[0].log_softmax(-1)  # (T, V)
            total += -sum(logp[i, y[i]].item() for i in masked) / k / len(sets)
    return total


def exact_nll(model: DiffusionLM, y: torch.Tensor) -> float:
    """-log p(y) of the one-token-per-step sampler: the mean over unmasking orders of the
    product of its conditionals, every order enumerated."""
    T = y.numel()
    probs = []
    for order in itertools.permutations(range(T)):
        z = torch.full_like(y, model.mask_id)
        logp = 0.0
        for i in order:
            logp += model(z[None])[0, i].log_softmax(-1)[y[i]].item()
            z[i] = y[i]
        probs.append(logp)
    return -(torch.tensor(probs, dtype=torch.float64).logsumexp(0) - math.log(len(probs))).item()


@pytest.mark.slow
def test_bound_is_above_exact_nll_exhaustively() -> None:
    """T = 4: the exact NLL (all 24 orders) <= the exact bound (all 15 mask sets), and the
    Monte Carlo nll_sum averages to the exact bound."""
    torch.manual_seed(0)
    config = small("diffusion", seq_len=4, n_layer=1, d_model=16, n_head=2)
    model = build_model(config).train(False)  # eval(), through the protocol
    assert isinstance(model, DiffusionLM)
    with torch.no_grad():
        for p in model.parameters():  # sharper, context-dependent predictions than at init
            p.mul_(8.0 if p.dim() >= 2 else 1.0)
        y = torch.tensor([7, 123, 7, 42])
        nll, bound = exact_nll(model, y), exact_bound(model, y)
        assert bound >= nll
        assert bound - nll > 1e-3  # the Jensen gap is real for a context-dependent model
        estimates = []
        for seed in range(100):
            model.eval_seed = seed
            estimates.append(model.nll_sum(y[None].repeat(4, 1), y[None].repeat(4, 1)).item() / 4)
    mean = sum(estimates) / len(estimates)
    sd = (sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1)) ** 0.5
    assert sd > 0
    assert abs(mean - bound) < 4 * sd / len(estimates) ** 0.5 + 1e-4


def test_nll_sum_is_deterministic() -> None:
    torch.manual_seed(0)
    model = build_model(small("diffusion"))
    assert isinstance(model, DiffusionLM)
    y = torch.randint(0, V, (3, 16))
    with torch.no_grad():
        assert model.nll_sum(y, y).item() == model.nll_sum(y, y).item()


@pytest.mark.slow
def test_diffusion_generate_unmasks_every_position() -> None:
    torch.manual_seed(0)
    model = build_model(small("diffusion"))
    assert isinstance(model, DiffusionLM)
    prompt = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]  # 13 of the 16 positions
    new = model.generate(prompt, n_tokens=40, seed=3)  # longer than the context: blocks
    assert len(new) == 40
    assert all(0 <= i < V for i in new)  # never [MASK]
    assert new == model.generate(prompt, n_tokens=40, seed=3)
    assert model.generate([], n_tokens=5, seed=0) != [] and model.training


# ----------------------------------------------------------------------------- real runs


@pytest.mark.parametrize("arch", ["gpt", "lstm", "diffusion"])
@pytest.mark.slow
def test_each_arch_trains(arch: str, tinystories: Path, cache_dir: Path) -> None:
    config = TrainConfig(
        model=ModelConfig(
            arch=arch, n_layer=1, d_model=32, n_head=2, pos="rope", vocab_size=1024, seq_len=32
        ),
        # 8 s: the diffusion model's training loss is noisy (a random masking rate per batch).
        # How far it falls in a wall-clock budget depends on the machine's load: idle, 0.46-0.59
        # over 1,400-1,700 steps; in one loaded CI run 0.30. Each progress reading averages about
        # 0.5 s of steps, and the last three agree within 0.01, so a fall of 0.15 is no noise.
        budget=8.0,
        data=str(tinystories),
        device="cpu",
        batch_size=16,
        lr=1e-2,
        eval_tokens=4096,
        curve_points=4,
        sample_tokens=12,
    )
    events: list[dict[str, float]] = []

    class Sink:
        def write(self, s: str) -> None:
            events.append(json.loads(s))

        def flush(self) -> None:
            pass

    result = train(
        config,
        cache_dir=cache_dir,
        events=Sink(),  # type: ignore[arg-type]  # write and flush are all train uses
        log_interval=0.5,
        out=None,
    )
    progress = [e["train_loss"] for e in events if e["kind"] == "progress"]
    assert len(progress) >= 3
    assert sum(progress[-3:]) / 3 < progress[0] - 0.15, progress  # the loss fell
    assert result.val_loss < math.log(1024) - 0.5
    for value in (result.val_loss, result.val_ppl, result.val_bpb, result.tokens_per_second):
        assert value is not None and math.isfinite(value) and value > 0
    assert all((v := p["val_loss"]) is not None and math.isfinite(v) for p in result.curve)
    assert result.val_is_bound == (arch == "diffusion")
    assert result.params == sum(p.numel() for p in build_model(config.model).parameters())
    assert result.sample.startswith(config.prompt) and len(result.sample) > len(config.prompt)


# ----------------------------------------------------------------------------- sweeps


class FixedTrial:
    """Stands in for an Optuna trial: categorical picks the given choice, floats their low end."""

    def __init__(self, cell: str) -> None:
        self.cell = cell

    def suggest_categorical(self, name: str, choices: list[str]) -> str:
        assert self.cell in choices
        return self.cell

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return low


def test_arch_sweep_matches_parameter_counts() -> None:
    from sweeps import archs

    for size in archs.SIZES:
        totals = {}
        for arch in ("gpt", "lstm", "diffusion"):
            config = archs.suggest(FixedTrial(f"{arch}@{size}"))
            config.validate()
            assert config.model.arch == arch
            totals[arch] = count_params(config.model).total
        assert max(totals.values()) / min(totals.values()) < 1.01, (size, totals)
        assert totals["gpt"] == pytest.approx(float(size.rstrip("M")) * 1e6, rel=0.1)


def test_sweeps_walk_cells_evenly() -> None:
    optuna = pytest.importorskip("optuna")
    from sweeps import archs, positions

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for sweep in (archs, positions):
        study = optuna.create_study(sampler=sweep.sampler(seed=0))
        seen = []
        for _ in range(len(sweep.CELLS) + 2):
            trial = study.ask()
            config = sweep.suggest(trial)
            config.validate()
            assert 1e-3 <= config.lr <= 1e-2
            seen.append(trial.params["cell"])
            study.tell(trial, 1.0)
        assert seen[: len(sweep.CELLS)] == sweep.CELLS  # every cell once, in order
        assert seen[len(sweep.CELLS) :] == sweep.CELLS[:2]


def test_positions_sweep_holds_size() -> None:
    from sweeps import positions

    counts = {
        cell: count_params(positions.suggest(FixedTrial(cell)).model) for cell in positions.CELLS
    }
    nonembedding = {c.nonembedding for c in counts.values()}
    assert max(nonembedding) / min(nonembedding) < 1.01
