from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from study.config import ModelConfig
from study.models import LanguageModel, build_model, count_params, param_groups
from study.models.gpt import Transformer

VARIANTS = list(itertools.product(("learned", "rope", "alibi", "none"), ("swiglu", "gelu")))


@pytest.mark.parametrize(("pos", "mlp"), VARIANTS)
def test_param_count_matches_numel(pos: str, mlp: str) -> None:
    config = ModelConfig(
        n_layer=2, d_model=64, n_head=4, pos=pos, mlp=mlp, vocab_size=512, seq_len=32
    )
    model = build_model(config)
    counts = count_params(config, model)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.total == counts.embedding + counts.nonembedding
    # Tied output head: the token embedding is counted once, the head adds nothing.
    expected_embedding = 512 * 64 + (32 * 64 if pos == "learned" else 0)
    assert counts.embedding == expected_embedding
    # Counting without building (meta device) gives the same numbers.
    assert count_params(config) == counts


def test_flops_per_token_convention() -> None:
    config = ModelConfig(n_layer=3, d_model=96, n_head=3, vocab_size=1000, seq_len=128)
    counts = count_params(config)
    expected = 6 * (counts.nonembedding + 1000 * 96) + 12 * 3 * 96 * 128
    assert counts.flops_per_token == expected


def test_param_groups_sum_to_total() -> None:
    model = build_model(ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=300, seq_len=16))
    groups = param_groups(model)
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("pos", "mlp"), VARIANTS)
def test_causal(pos: str, mlp: str) -> None:
    """Changing a later token never changes earlier positions' outputs."""
    torch.manual_seed(0)
    config = ModelConfig(
        n_layer=2, d_model=32, n_head=4, pos=pos, mlp=mlp, vocab_size=300, seq_len=16
    )
    model = build_model(config).train(False)  # eval(), through the protocol
    x = torch.randint(0, 300, (2, 16))
    y = x.clone()
    y[:, 10] = (y[:, 10] + 1) % 300
    with torch.no_grad():
        a, b = model(x), model(y)
    assert a.shape == (2, 16, 300)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_position_schemes_see_order() -> None:
    """learned, rope and alibi make the last position depend on the order of earlier tokens."""
    torch.manual_seed(0)
    for pos in ("learned", "rope", "alibi"):
        config = ModelConfig(n_layer=1, d_model=32, n_head=2, pos=pos, vocab_size=300, seq_len=8)
        model = build_model(config).train(False)  # eval(), through the protocol
        x = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
        swapped = torch.tensor([[6, 5, 7, 8, 9, 10, 11, 12]])
        with torch.no_grad():
            assert not torch.allclose(model(x)[:, -1], model(swapped)[:, -1])


def test_loss_is_cross_entropy() -> None:
    torch.manual_seed(0)
    config = ModelConfig(n_layer=1, d_model=32, n_head=2, vocab_size=300, seq_len=8)
    model = build_model(config)
    x, y = torch.randint(0, 300, (3, 8)), torch.randint(0, 300, (3, 8))
    logits = model(x)
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, 300), y.reshape(-1))
    torch.testing.assert_close(model.loss(x, y), expected)
    with torch.no_grad():
        assert model.nll_sum(x, y).item() == pytest.approx(expected.item() * y.numel(), rel=1e-5)


@pytest.mark.parametrize("arch", ["gpt", "lstm", "diffusion"])
def test_every_model_keeps_the_contract(arch: str) -> None:
    """``LanguageModel``: logits are the hidden states through the head, one row per token."""
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, n_layer=1, d_model=32, n_head=2, vocab_size=300, seq_len=8)
    model: LanguageModel = build_model(config)
    x = torch.randint(0, 300, (2, 8))
    with torch.no_grad():
        hidden = model.hidden(x)
        assert hidden.shape == (2, 8, 32) and model.head_weight.shape == (300, 32)
        torch.testing.assert_close(model(x), hidden @ model.head_weight.t())
        assert model.loss(x, x).shape == () and model.nll_sum(x, x).shape == ()
    assert model.nll_is_bound == (arch == "diffusion")
    assert model.step_fusable == (arch == "gpt")
    new = model.generate([1, 2], n_tokens=5, seed=0)
    assert len(new) == 5 and all(0 <= i < 300 for i in new)


def test_gpt_and_diffusion_share_one_transformer_body() -> None:
    config = ModelConfig(arch="gpt", n_layer=2, d_model=32, n_head=2, vocab_size=300, seq_len=8)
    gpt = build_model(config)
    diffusion = build_model(dataclasses.replace(config, arch="diffusion"))
    assert type(gpt.transformer) is type(diffusion.transformer) is Transformer  # type: ignore[attr-defined]
    assert [b.attn.causal for b in gpt.transformer.blocks] == [True, True]  # type: ignore[attr-defined,union-attr]
    assert [b.attn.causal for b in diffusion.transformer.blocks] == [False, False]  # type: ignore[attr-defined,union-attr]


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_generate_samples_the_last_positions_logits(arch: str) -> None:
    """The sampler (last position's hidden state through the head, a context of at most seq_len
    ids) draws what sampling from the full logits by hand draws, with the same generator."""
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, n_layer=2, d_model=32, n_head=4, vocab_size=300, seq_len=8)
    model = build_model(config)
    generator = torch.Generator().manual_seed(3)
    ids = torch.tensor([[1, 2, 3]])
    expected = []
    with torch.no_grad():
        for _ in range(20):  # longer than seq_len: the context slides
            logits = model(ids[:, -8:])[:, -1, :].float() / 0.8
            kth = torch.topk(logits, 40).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            ids = torch.cat((ids, nxt), dim=1)
            expected.append(int(nxt))
    model.train()
    assert model.generate([1, 2, 3], n_tokens=20, seed=3) == expected
    assert model.training  # the mode it came in


@pytest.mark.parametrize("arch", ["gpt", "lstm", "diffusion"])
def test_dropout(arch: str) -> None:
    """dropout 0: the network of before (same weights, train mode = eval mode, no random draw);
    dropout > 0: the same weights, outputs that differ between training passes, and in eval mode
    exactly the dropout-0 network's outputs."""
    config = ModelConfig(arch=arch, n_layer=2, d_model=32, n_head=4, vocab_size=300, seq_len=16)
    torch.manual_seed(0)
    plain = build_model(config)
    torch.manual_seed(0)
    dropped = build_model(dataclasses.replace(config, dropout=0.2))
    for p, q in zip(plain.parameters(), dropped.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    x = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        plain.train()
        rng = torch.get_rng_state()
        trained = plain(x)
        assert torch.equal(torch.get_rng_state(), rng)  # no dropout drawn
        plain.train(False)
        reference = plain(x)
        assert torch.equal(trained, reference)
        dropped.train()
        a, b = dropped(x), dropped(x)
        assert not torch.allclose(a, b) and not torch.allclose(a, reference)
        dropped.train(False)
        assert torch.equal(dropped(x), reference) and torch.equal(dropped(x), dropped(x))
