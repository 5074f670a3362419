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
from study.models.gpt import apply_rope, value_embed_layers
from study.train import build_parser, config_from_args, main
from study.training.optim import MuonAdamW, make_optimizer, route_params
from study.training.plan import StepPlan
from study.training.step import TrainStep, make_loss

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


@pytest.mark.parametrize("switches", [{"embed_shortcut": True}, {"value_embeds": 1}])
def test_the_layer_loop_does_no_arithmetic_between_blocks(switches: dict[str, Any]) -> None:
    """The shortcut's mixing (and the value embedding's) happens inside ``Block.forward``, the
    region the GPU step compiles once for every layer: each block takes the previous block's
    output itself, and the shortcut's x0 and this layer's two scalars as an argument."""
    model = seeded(**switches)
    body = model.transformer
    seen: list[tuple[Any, ...]] = []
    outputs: list[torch.Tensor] = []
    for block in body.blocks:
        block.register_forward_pre_hook(lambda _, args: seen.append(args))
        block.register_forward_hook(lambda _, __, out: outputs.append(out))
    model(IDX)
    assert seen[1][0] is outputs[0]  # the stream as block 0 left it
    if switches.get("embed_shortcut"):
        for i, args in enumerate(seen):
            x0, resid, mixed = args[4]
            assert x0.shape == (2, 8, 16) and resid.dim() == mixed.dim() == 0
            assert resid._base is body.resid_lambdas and mixed._base is body.x0_lambdas
            assert resid.item() == body.resid_lambdas[i].item()
    else:
        assert any(args[3] is not None for args in seen)  # rows mixed into values inside it


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


@pytest.mark.parametrize(
    ("n_layer", "tables", "layers"),
    [
        (5, 2, [0, 1, None, 0, 1]),
        (6, 3, [0, 1, 2, 0, 1, 2]),
        (3, 2, [0, 1, 1]),
        (2, 2, [0, 1]),
        (1, 1, [0]),
        (3, 0, [None, None, None]),
    ],
)
def test_value_embed_layers_take_the_first_and_last_layers(
    n_layer: int, tables: int, layers: list[int | None]
) -> None:
    assert value_embed_layers(n_layer, tables) == layers


def test_value_embeds_forward_matches_the_hand_written_one() -> None:
    model = seeded(value_embeds=1, pos="rope")
    body = model.transformer
    lambdas = ((0.3, 1.7), (-0.4, 0.9))
    with torch.no_grad():
        for block, pair in zip(body.blocks, lambdas, strict=True):
            block.attn.ve_lambdas.copy_(torch.tensor(pair))
        x = body.wte.weight[IDX]  # (2, 8, 16)
        ve = body.value_embeds[0].weight[IDX].view(2, 8, 2, 8).transpose(1, 2)  # (B, h, T, hd)
        for block, (a, b) in zip(body.blocks, lambdas, strict=True):
            h = block.ln1(x)
            q, k, v = (h @ block.attn.qkv.weight.T).view(2, 8, 3, 2, 8).permute(2, 0, 3, 1, 4)
            q, k = (
                apply_rope(q, body.rope_cos, body.rope_sin),
                apply_rope(k, body.rope_cos, body.rope_sin),
            )
            scores = (q @ k.transpose(-1, -2)) / 8**0.5
            scores = scores.masked_fill(torch.ones(8, 8).triu(1).bool(), float("-inf"))
            y = scores.softmax(-1) @ (a * v + b * ve)  # (B, h, T, hd)
            x = x + y.transpose(1, 2).reshape(2, 8, 16) @ block.attn.proj.weight.T
            x = x + block.mlp(block.ln2(x))
        expected = F.linear(body.ln_f(x), body.wte.weight)
        torch.testing.assert_close(model(IDX), expected, rtol=1e-5, atol=1e-6)


def test_value_embeds_leave_every_other_weight_as_drawn_without_them() -> None:
    on, off = seeded(value_embeds=2, untied_head=True), seeded(untied_head=True)
    on_state = on.state_dict()
    tables = [on_state.pop(f"transformer.value_embeds.{j}.weight") for j in range(2)]
    for j in range(2):
        assert torch.equal(
            on_state.pop(f"transformer.blocks.{j}.attn.ve_lambdas"), torch.full((2,), 0.5)
        )
    assert on_state.keys() == off.state_dict().keys()
    for key, value in off.state_dict().items():
        assert torch.equal(on_state[key], value), key
    for table in tables:  # drawn as the token embedding, each its own draw
        assert table.shape == (300, 16) and 0.015 < table.std().item() < 0.025
    assert not torch.equal(tables[0], tables[1])


def test_value_embeds_are_counted_as_embeddings_and_go_to_adam() -> None:
    config = ModelConfig(**{**TINY.__dict__, "n_layer": 3, "value_embeds": 1})
    plain = count_params(ModelConfig(**{**TINY.__dict__, "n_layer": 3}))
    on = count_params(config)
    assert on.embedding == plain.embedding + 300 * 16  # one table, vocab x d_model
    assert on.nonembedding == plain.nonembedding + 2 * 2  # layers 0 and 2 mix it in
    assert on.total == on.embedding + on.nonembedding
    assert on.flops_per_token == plain.flops_per_token + 6 * 2 * 2  # a lookup: no matmul
    model = seeded(n_layer=3, value_embeds=1)
    assert on.total == sum(p.numel() for p in model.parameters())
    routes = {name: {id(p) for p in ps} for name, ps in route_params(model).items()}
    assert id(model.transformer.value_embeds[0].weight) in routes["adam_decay"]
    lambdas = [b.attn.ve_lambdas for b in model.transformer.blocks if b.attn.ve_lambdas is not None]
    assert len(lambdas) == 2 and {id(p) for p in lambdas} <= routes["adam"]
    assert model.transformer.blocks[1].attn.ve_lambdas is None


def test_diffusion_takes_value_embeds_with_its_mask_row() -> None:
    model = seeded(arch="diffusion", value_embeds=1)
    assert model.transformer.value_embeds[0].weight.shape == (301, 16)  # and [MASK]
    model.loss(IDX, IDX).backward()
    assert model.transformer.value_embeds[0].weight.grad is not None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": "lstm", "value_embeds": 1}, "arch lstm does not take value_embeds"),
        ({"value_embeds": 3}, r"value_embeds must be at most n_layer \(2\), got 3"),
        ({"value_embeds": -1}, "value_embeds must be an integer >= 0, got -1"),
        ({"value_embeds": True}, "value_embeds must be an integer >= 0, got True"),
    ],
)
def test_bad_value_embeds_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        ModelConfig(**{**TINY.__dict__, **changes}).validate()


def test_value_embeds_flag_reaches_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["--value-embeds", "2", "--n-layer", "4", "--data", "sample"])
    config = config_from_args(args)
    assert config.model.value_embeds == 2
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(SystemExit) as exc:
        main(["--value-embeds", "5", "--n-layer", "4", "--data", "sample", "--budget", "1"])
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: value_embeds must be at most n_layer (4), got 5\n"


BOTH = {"embed_shortcut": True, "value_embeds": 1}


@pytest.mark.parametrize(
    "changes",
    [BOTH, {**BOTH, "untied_head": True, "logit_softcap": 15.0, "pos": "rope", "norm": "rmsnorm"}],
)
def test_fused_head_loss_and_gradients_match_the_model_with_both(changes: dict[str, Any]) -> None:
    model = seeded(**changes)
    plan = StepPlan(compile=False, cuda_graph=False, ce_chunk=7, autocast=None, fused_adamw=False)
    ref = model.loss(IDX, IDX.roll(1, dims=1))
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    loss = make_loss(model, plan)(IDX, IDX.roll(1, dims=1))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_cpu_eager_step_trains_both(optimizer: str) -> None:
    config = TrainConfig(
        model=ModelConfig(**{**TINY.__dict__, **BOTH}),
        device="cpu",
        batch_size=4,
        lr=1e-2,
        optimizer=optimizer,
        ema_decay=0.9,
    )
    torch.manual_seed(0)
    model = build_model(config.model)
    tokens = torch.arange(4000, dtype=torch.int32) % 11  # a pattern a few steps can learn
    step = TrainStep(model, config, device=torch.device("cpu"), tokens=tokens, batch_size=4)
    assert step.plan.ce_chunk and not step.plan.compile  # the fused head, eager
    step(lr=1e-2, seq_len=8)
    first = step.read_loss()[0]
    for _ in range(20):
        step(lr=1e-2, seq_len=8)
    last, bad = step.read_loss()
    assert not bad and last < first - 0.5
    body = model.transformer  # type: ignore[attr-defined]
    assert not torch.equal(body.x0_lambdas, torch.zeros(2))
    assert not torch.equal(body.blocks[0].attn.ve_lambdas, torch.full((2,), 0.5))


def test_bench_recipes_has_a_recipe_for_each_embedding_switch() -> None:
    from bench.recipes import RECIPES, recipe_configs
    from sweeps.ladder_gpu import SIZES

    cells = recipe_configs(",".join(SIZES), ",".join(RECIPES), device="cpu")  # all validate
    assert len(cells) == len(SIZES) * len(RECIPES)
    by_name = {(size, name): config for size, name, config in cells}
    assert by_name["L2-d64", "shortcut"].model.embed_shortcut
    assert by_name["L2-d64", "value-embeds"].model.value_embeds == 1
    both = by_name["L5-d256", "muon+modern+embeds"]
    assert both.optimizer == "muon" and both.model.embed_shortcut and both.model.value_embeds
    with pytest.raises(UsageError, match="unknown recipe"):
        recipe_configs("L2-d64", "adamw,sgd", device="cpu")
    with pytest.raises(UsageError, match="unknown size"):
        recipe_configs("L9-d1", "adamw", device="cpu")
