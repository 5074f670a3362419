"""Regional compilation of the training trunk (study.training.regional): the repeated block
compiled once, the same loss and gradients as eager, one compiled graph for every layer and every
depth at one width, and the model left eager outside the step.

The compiling tests run Inductor on the CPU (it starts a C++ compiler: marked slow) and skip
where it cannot compile here.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from compiling import needs_inductor, unique_graphs

from study.config import ModelConfig, TrainConfig
from study.models import build_model
from study.training.plan import StepPlan, plan_step
from study.training.regional import (
    ONE_CONFIG,
    CompiledBlocks,
    compile_options,
    embedding,
    final_norm,
    make_trunk,
    repeated_blocks,
)
from study.training.step import make_loss

V, T = 300, 16
REGIONAL = StepPlan(
    compile=True, cuda_graph=False, ce_chunk=7, autocast=None, fused_adamw=False, regional=True
)
EAGER = dataclasses.replace(REGIONAL, compile=False, regional=False)


def gpt(n_layer: int, *, pos: str = "learned") -> ModelConfig:
    return ModelConfig(n_layer=n_layer, d_model=32, n_head=4, vocab_size=V, seq_len=T, pos=pos)


def test_repeated_blocks_are_the_transformer_layers() -> None:
    model = build_model(gpt(3))
    blocks = repeated_blocks(model)
    assert blocks == list(model.transformer.blocks)  # type: ignore[attr-defined]
    lstm = build_model(ModelConfig(arch="lstm", n_layer=2, d_model=32, vocab_size=V, seq_len=T))
    assert repeated_blocks(lstm) == []
    model.tables = torch.nn.ModuleList(torch.nn.Embedding(V, 32) for _ in range(3))  # type: ignore[assignment,attr-defined]
    assert repeated_blocks(model) == blocks  # single layers are not blocks


def test_the_gpu_plan_compiles_by_regions_and_says_so() -> None:
    config = TrainConfig(model=gpt(2), device="cuda", batch_size=4)
    cuda = torch.device("cuda")  # a plan needs no device present
    plan = plan_step(config, cuda, build_model(config.model))
    assert plan.compile and plan.regional
    assert "compile-blocks" in plan.describe()
    assert not plan_step(config.replace(compile=False), cuda, build_model(config.model)).regional
    assert not plan_step(config, torch.device("cpu"), build_model(config.model)).regional


def test_the_regions_compile_with_one_kernel_configuration_each() -> None:
    """Inductor's settings for the regions: each pointwise and reduction kernel compiled with one
    launch configuration, not several timed on its first call (every setting known to this
    PyTorch); max-autotune's own settings instead when asked."""
    import torch._inductor.config as inductor_config

    options = compile_options(autotune=False)
    assert options == ONE_CONFIG
    assert options["triton.autotune_pointwise"] is False
    assert inductor_config.triton.autotune_pointwise is True  # a compile's options, not global
    assert compile_options(autotune=True)["max_autotune"] is True


def test_settings_this_pytorch_lacks_are_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older PyTorch without one of the settings still compiles, with the others."""
    import study.training.regional as regional

    wanted = {**ONE_CONFIG, "triton.no_such_setting": True, "no_such_setting": 1}
    monkeypatch.setattr(regional, "ONE_CONFIG", wanted)
    assert compile_options(autotune=False) == ONE_CONFIG


def test_compiled_forward_is_installed_only_while_active() -> None:
    model = build_model(gpt(2))
    blocks = repeated_blocks(model)
    norm = final_norm(model)
    assert norm is model.transformer.ln_f  # type: ignore[attr-defined]
    body = embedding(model)
    assert body is model.transformer  # type: ignore[attr-defined]
    # torch.compile is lazy: nothing compiles here
    regions = CompiledBlocks(blocks, norm=norm, embed=body)
    with pytest.raises(RuntimeError), regions.active():
        assert all("forward" in m.__dict__ for m in [*blocks, norm])
        assert "embed" in body.__dict__ and "forward" not in body.__dict__
        raise RuntimeError("inside")
    assert not any("forward" in m.__dict__ for m in [*blocks, norm])
    assert "embed" not in body.__dict__


@pytest.mark.slow
@pytest.mark.parametrize(
    ("autotune", "shortcut", "tables"), [(False, False, 0), (True, False, 0), (False, True, 1)]
)
def test_regional_loss_and_gradients_match_eager(
    autotune: bool, shortcut: bool, tables: int
) -> None:
    """Compiled by regions, with the project's Inductor settings or max-autotune (on a CPU its
    C++ templates or ATen's products, whichever it times faster); and with the embedding
    shortcut, its x0 made in the embedding's region and mixed inside the compiled block, and a
    value embedding looked up in the embedding's region."""
    needs_inductor()
    torch.manual_seed(0)
    config = dataclasses.replace(gpt(2), embed_shortcut=shortcut, value_embeds=tables)
    model = build_model(config)
    eager = copy.deepcopy(model)
    x, y = torch.randint(0, V, (2, 3, T))
    ref = eager.loss(x, y)
    ref_grads = torch.autograd.grad(ref, list(eager.parameters()))
    loss = make_loss(model, dataclasses.replace(REGIONAL, autotune=autotune))(x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_regional_bf16_matches_the_eager_step_in_bf16() -> None:
    """Under bf16 autocast the final norm's region casts to bf16 (the cast fused into it): the
    trunk's output is bf16 and the loss and gradients are the eager step's, to bf16 rounding."""
    needs_inductor()
    torch.manual_seed(0)
    model = build_model(gpt(2))
    eager = copy.deepcopy(model)
    x, y = torch.randint(0, V, (2, 3, T))
    plans = [dataclasses.replace(p, autocast=torch.bfloat16) for p in (REGIONAL, EAGER)]
    results = []
    for net, plan in zip((model, eager), plans, strict=True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = make_loss(net, plan)(x, y)
        results.append((loss, torch.autograd.grad(loss, list(net.parameters()))))
    (loss, grads), (ref, ref_grads) = results
    assert loss.item() == pytest.approx(ref.item(), rel=1e-2)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=5e-2, atol=5e-3)
    trunk = make_trunk(model, torch.bfloat16, compile=True, regional=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert trunk(x).dtype == torch.bfloat16


@pytest.mark.slow
@pytest.mark.parametrize("shortcut", [False, True])
def test_models_of_two_depths_share_one_compiled_block(shortcut: bool) -> None:
    """Depth 2 then depth 4 at one width: four graphs in all (the block's, compiled once for all
    six layers, the embedding's, the final norm's and the head's softmax gradient), and the models
    stay eager
    afterwards (another shape, in evaluation, compiles nothing). With the embedding shortcut
    too: each layer's mixing is inside the block, its scalars passed in, not its index."""
    needs_inductor()
    torch._dynamo.reset()
    before = unique_graphs()
    plan = dataclasses.replace(REGIONAL, ce_chunk=4 * T)  # one chunk: one softmax graph
    for n_layer in (2, 4):
        torch.manual_seed(n_layer)
        config = dataclasses.replace(gpt(n_layer, pos="rope"), embed_shortcut=shortcut)
        model = build_model(config)
        x, y = torch.randint(0, V, (2, 4, T))
        make_loss(model, plan)(x, y).backward()
        assert unique_graphs() == before + 4
        with torch.no_grad():
            model.train(False)
            model.nll_sum(x[:, :3], y[:, :3])  # (3, T): a shape the step never saw
        assert unique_graphs() == before + 4
