"""The embedding switches of ModelConfig: the embedding shortcut into every block (learned
per-layer scalars) and value embeddings mixed into the attention values. Their math against a
forward written out by hand, their parameter counts and optimizer groups, the refusal where they
do not apply, and that the network they start as is the one without them where it should be."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from study.config import ModelConfig, TrainConfig
from study.errors import UsageError
from study.models import build_model, count_params
from study.train import build_parser, config_from_args, main
from study.training.optim import MuonAdamW, make_optimizer, route_params

TINY = ModelConfig(n_layer=2, d_model=16, n_head=2, seq_len=8, vocab_size=300)


def seeded(**changes: Any) -> Any:
    """The model of TINY with ``changes``, built after ``torch.manual_seed(0)``."""
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**TINY.__dict__, **changes}))


def rms(x: torch.Tensor) -> torch.Tensor:
    return x / x.pow(2).mean(-1, keepdim=True).add(torch.finfo(x.dtype).eps).sqrt()


IDX = torch.tensor([[1, 5, 9, 2, 7, 3, 3, 0], [8, 6, 4, 2, 299, 11, 12, 13]])


def test_shortcut_forward_matches_the_hand_written_one() -> None:
    model = seeded(embed_shortcut=True)
    body = model.transformer
    with torch.no_grad():
        body.resid_lambdas.copy_(torch.tensor([0.7, 1.3]))
        body.x0_lambdas.copy_(torch.tensor([0.25, -0.5]))
        x = body.wte.weight[IDX] + body.wpe.weight[:8]  # (2, 8, 16)
        x0 = rms(x)
        for a, b, block in zip((0.7, 1.3), (0.25, -0.5), body.blocks, strict=True):
            x = a * x + b * x0
            x = x + block.attn(block.ln1(x), None, None)
            x = x + block.mlp(block.ln2(x))
        expected = F.linear(body.ln_f(x), body.wte.weight)
        torch.testing.assert_close(model(IDX), expected)


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_shortcut_starts_as_the_network_without_it(pos: str) -> None:
    on, off = seeded(embed_shortcut=True, pos=pos), seeded(pos=pos)
    on_state = on.state_dict()
    assert torch.equal(on_state.pop("transformer.resid_lambdas"), torch.ones(2))
    assert torch.equal(on_state.pop("transformer.x0_lambdas"), torch.zeros(2))
    for (key, value), (key_off, value_off) in zip(
        on_state.items(), off.state_dict().items(), strict=True
    ):
        assert key == key_off and torch.equal(value, value_off), key
    with torch.no_grad():
        torch.testing.assert_close(on(IDX), off(IDX), rtol=0, atol=0)


def test_shortcut_scalars_learn() -> None:
    model = seeded(embed_shortcut=True)
    model.loss(IDX, IDX.roll(1, dims=1)).backward()
    body = model.transformer
    assert body.x0_lambdas.grad is not None and body.x0_lambdas.grad.abs().min() > 0
    assert body.resid_lambdas.grad is not None and body.resid_lambdas.grad.abs().min() > 0


def test_shortcut_is_counted_with_the_trunk_and_on_the_scalar_group() -> None:
    base, on = (
        count_params(TINY),
        count_params(ModelConfig(**{**TINY.__dict__, "embed_shortcut": True})),
    )
    assert on.total == base.total + 2 * TINY.n_layer
    assert on.nonembedding == base.nonembedding + 2 * TINY.n_layer
    assert on.embedding == base.embedding
    model = seeded(embed_shortcut=True)
    assert on.total == sum(p.numel() for p in model.parameters())
    body = model.transformer
    scalars = {id(body.resid_lambdas), id(body.x0_lambdas)}
    routes = route_params(model)
    assert scalars <= {id(p) for p in routes["adam"]}  # Adam, never decayed, with Muon
    config = TrainConfig(model=model.config, optimizer="muon")
    muon = make_optimizer(model, config, fused=False, lr=1e-3)
    assert isinstance(muon, MuonAdamW)
    on_muon = {id(p) for g in muon.muon.param_groups for p in g["params"]}
    assert not scalars & on_muon
    adamw = make_optimizer(model, TrainConfig(model=model.config), fused=False, lr=1e-3)
    (no_decay,) = [g for g in adamw.param_groups if g["weight_decay"] == 0.0]
    assert scalars <= {id(p) for p in no_decay["params"]}


def test_diffusion_takes_the_shortcut() -> None:
    model = seeded(arch="diffusion", embed_shortcut=True)
    model.loss(IDX, IDX).backward()
    assert model.transformer.x0_lambdas.grad is not None


def test_lstm_refuses_the_shortcut_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="arch lstm does not take embed_shortcut"):
        ModelConfig(arch="lstm", embed_shortcut=True).validate()
    with pytest.raises(SystemExit) as exc:
        main(["--arch", "lstm", "--embed-shortcut", "--data", "sample", "--budget", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: arch lstm does not take embed_shortcut\n"


def test_shortcut_flag_reaches_the_config() -> None:
    args = build_parser().parse_args(["--embed-shortcut", "--data", "sample"])
    config = config_from_args(args)
    assert config.model.embed_shortcut is True
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config_from_args(build_parser().parse_args(["--data", "sample"])).model == ModelConfig()
