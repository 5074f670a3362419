"""The speedrun architecture switches of ModelConfig: their math, their parameter counts, their
refusal where they do not apply, the fused head with a soft-cap, and that the defaults build
today's model bit for bit."""

from __future__ import annotations

import copy
import hashlib
import math

import pytest
import torch
import torch.nn.functional as F

from study.config import ModelConfig, TrainConfig
from study.errors import UsageError
from study.models import build_model, count_params
from study.models.gpt import MLP, Attention, RMSNorm
from study.models.loss import head_kernels, linear_cross_entropy, linear_nll_sum, softcap
from study.train import build_parser, config_from_args

SMALL = ModelConfig(n_layer=2, d_model=64, n_head=2, seq_len=32, vocab_size=512)
# sha256 of the state_dict of SMALL built after torch.manual_seed(0) by commit 4b2157f (before
# the switches existed): the defaults must draw and store exactly the same weights.
TODAY = {
    "learned": "973999581cf34082a104ee029b891dffd6d37f501c278581a9d23979d0c734cf",
    "rope": "5eccb21e56b5a7ee92d39cb9f69d71ec9ba4fd31fe36f3b71933e0010ca7dd26",
}
TODAY_LOGITS = {"learned": -14.724992662442673, "rope": -19.679936762237276}


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.numpy().tobytes())
    return h.hexdigest()


def seeded(config: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(config)  # type: ignore[return-value]


@pytest.mark.parametrize("pos", ["learned", "rope"])
def test_defaults_build_todays_model_bit_for_bit(pos: str) -> None:
    config = ModelConfig(**{**SMALL.__dict__, "pos": pos})
    explicit = ModelConfig(
        **{
            **config.__dict__,
            "norm": "layernorm",
            "qk_norm": False,
            "untied_head": False,
            "logit_softcap": 0.0,
            "zero_init_proj": False,
        }
    )
    a, b = seeded(config), seeded(explicit)
    assert digest(a) == digest(b) == TODAY[pos]
    x = torch.arange(64).view(2, 32) % 512
    with torch.no_grad():
        la, lb = a(x), b(x)
    assert torch.equal(la, lb)
    # The weights are compared bit for bit above; the logits' sum only to what float32 kernels
    # leave in the last bits, which differ between CPUs (AVX2, AVX-512): 1.2e-6 on this sum
    # between two 2-core machines, far below what any changed default moves it by.
    assert la.double().sum().item() == pytest.approx(TODAY_LOGITS[pos], rel=0, abs=1e-4)


def test_rmsnorm_is_parameter_free_and_normalises_rms() -> None:
    x = torch.randn(3, 5, 16) * 7 + 1
    y = RMSNorm()(x)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + torch.finfo(x.dtype).eps)
    torch.testing.assert_close(y, expected)
    assert list(RMSNorm().parameters()) == []
    model = build_model(ModelConfig(**{**SMALL.__dict__, "norm": "rmsnorm"}))
    assert not any(p.dim() == 1 for p in model.parameters())  # the norm gains are gone


def test_relu2_mlp_squares_the_relu() -> None:
    config = ModelConfig(**{**SMALL.__dict__, "mlp": "relu2"})
    mlp = MLP(config)
    assert mlp.up.weight.shape == (4 * 64, 64)
    x = torch.randn(4, 64)
    expected = mlp.down(torch.clamp(mlp.up(x), min=0) ** 2)
    torch.testing.assert_close(mlp(x), expected)


def test_qk_norm_normalises_each_heads_query_and_key() -> None:
    config = ModelConfig(**{**SMALL.__dict__, "qk_norm": True})
    torch.manual_seed(0)
    attn = Attention(config)
    x = torch.randn(2, 8, 64)
    q, k, v = attn.qkv(x).view(2, 8, 3, 2, 32).permute(2, 0, 3, 1, 4)
    rms = lambda t: t / t.pow(2).mean(-1, keepdim=True).add(torch.finfo(t.dtype).eps).sqrt()  # noqa: E731
    y = F.scaled_dot_product_attention(rms(q), rms(k), v, is_causal=True)
    expected = attn.proj(y.transpose(1, 2).reshape(2, 8, 64))
    torch.testing.assert_close(attn(x, None, None), expected)
    # Scaling a head's query leaves the output unchanged: the norm removes the scale.
    with torch.no_grad():
        attn.qkv.weight[:32] *= 10
    torch.testing.assert_close(attn(x, None, None), expected, rtol=1e-4, atol=1e-5)


def test_softcap_bounds_logits_and_is_identity_at_zero() -> None:
    z = torch.linspace(-100, 100, 101)
    capped = softcap(z, 15.0)
    assert capped.abs().max() < 15
    torch.testing.assert_close(capped, 15 * torch.tanh(z / 15))
    torch.testing.assert_close(softcap(z[40:61] / 100, 15.0), z[40:61] / 100, rtol=1e-3, atol=0)
    assert softcap(z, 0.0) is z


def test_fused_head_with_softcap_matches_plain_cross_entropy() -> None:
    torch.manual_seed(0)
    h = (torch.randn(40, 16) * 3).requires_grad_()
    w = torch.randn(50, 16).requires_grad_()
    y = torch.randint(0, 50, (40,))
    ref = F.cross_entropy(softcap(h @ w.T, 5.0), y)
    ref_grads = torch.autograd.grad(ref, [h, w])
    grad, _ = head_kernels("torch", device=h.device, vocab_size=50, compile=False, cap=5.0)
    loss = linear_cross_entropy(h, w, y, chunk=7, softmax_grad=grad)
    grads = torch.autograd.grad(loss, [h, w])
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
    total = linear_nll_sum(h, w, y, chunk=7, cap=5.0)
    assert total.item() == pytest.approx(ref.item() * 40, rel=1e-5)


def test_untied_head_is_counted_in_full() -> None:
    tied = count_params(SMALL)
    untied_config = ModelConfig(**{**SMALL.__dict__, "untied_head": True})
    untied = count_params(untied_config)
    assert untied.total == tied.total + 512 * 64
    assert untied.embedding == tied.embedding + 512 * 64
    assert untied.nonembedding == tied.nonembedding
    assert untied.flops_per_token == tied.flops_per_token  # the head's matmul was counted
    model = build_model(untied_config)
    assert untied.total == sum(p.numel() for p in model.parameters())
    assert model.head_weight is not model.transformer.wte.weight  # type: ignore[attr-defined]


def test_zero_init_proj_zeroes_the_residual_projections_and_untied_head() -> None:
    model = seeded(ModelConfig(**{**SMALL.__dict__, "zero_init_proj": True, "untied_head": True}))
    zero = {n for n, p in model.named_parameters() if not p.any()}
    assert zero == {"head.weight"} | {
        f"transformer.blocks.{i}.{m}.weight" for i in range(2) for m in ("attn.proj", "mlp.down")
    }
    # Everything else is drawn exactly as without the switch.
    plain = seeded(ModelConfig(**{**SMALL.__dict__, "untied_head": True}))
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        if name not in zero:
            assert torch.equal(p, q), name


def test_all_switches_train_together() -> None:
    config = ModelConfig(
        **{
            **SMALL.__dict__,
            "mlp": "relu2",
            "norm": "rmsnorm",
            "qk_norm": True,
            "untied_head": True,
            "logit_softcap": 15.0,
            "zero_init_proj": True,
            "pos": "rope",
        }
    )
    torch.manual_seed(0)
    model = build_model(config)
    x = torch.randint(0, 512, (4, 32))
    loss = model.loss(x, x)
    assert loss.item() == pytest.approx(math.log(512), rel=1e-3)  # zero head: uniform
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("arch", "changes"),
    [
        ("lstm", {"mlp": "relu2"}),
        ("lstm", {"norm": "rmsnorm"}),
        ("lstm", {"qk_norm": True}),
        ("lstm", {"zero_init_proj": True}),
        ("lstm", {"untied_head": True}),
        ("diffusion", {"untied_head": True}),
        ("diffusion", {"logit_softcap": 15.0}),
        ("gpt", {"logit_softcap": -1.0}),
        ("gpt", {"norm": "batchnorm"}),
    ],
)
def test_switches_are_refused_where_they_do_not_apply(
    arch: str, changes: dict[str, object]
) -> None:
    with pytest.raises(UsageError):
        ModelConfig(arch=arch, **changes).validate()  # type: ignore[arg-type]


def test_diffusion_takes_the_body_switches() -> None:
    ModelConfig(arch="diffusion", mlp="relu2", norm="rmsnorm", qk_norm=True).validate()


def test_cli_flags_reach_the_config() -> None:
    args = build_parser().parse_args(
        "--mlp relu2 --norm rmsnorm --qk-norm --untied-head --logit-softcap 15 "
        "--zero-init-proj --optimizer muon --muon-lr 0.03 --data sample".split()
    )
    config = config_from_args(args)
    m = config.model
    assert (m.mlp, m.norm, m.qk_norm, m.untied_head, m.logit_softcap, m.zero_init_proj) == (
        "relu2",
        "rmsnorm",
        True,
        True,
        15.0,
        True,
    )
    assert (config.optimizer, config.muon_lr) == ("muon", 0.03)
    assert TrainConfig.from_dict(config.to_dict()) == config


ALL_ON = {
    "mlp": "relu2",
    "norm": "rmsnorm",
    "qk_norm": True,
    "untied_head": True,
    "logit_softcap": 15.0,
    "zero_init_proj": True,
    "embed_shortcut": True,
    "value_embeds": 2,
}
EMBEDS = {"embed_shortcut": True, "value_embeds": 1}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "changes",
    [
        {**ALL_ON, "pos": "rope"},
        {**ALL_ON, "optimizer": "muon", "ema_decay": 0.9, "schedule": "wsd"},
        {"logit_softcap": 30.0, "d_model": 64, "n_head": 2},  # fused Triton kernel's width
        {"mlp": "relu2", "qk_norm": True, "optimizer": "muon"},
        {**EMBEDS, "pos": "rope"},
        {**EMBEDS, "optimizer": "muon", "d_model": 64, "n_head": 2},  # and the Triton kernel
        {"embed_shortcut": True, "pos": "learned", "ema_decay": 0.9},
        {"value_embeds": 2, "pos": "alibi", "optimizer": "muon"},
    ],
)
def test_switches_compile_and_capture_on_cuda(changes: dict[str, object]) -> None:
    from study.training.plan import StepPlan, plan_step
    from study.training.step import TrainStep

    device = torch.device("cuda")
    model_config = ModelConfig(n_layer=2, d_model=128, n_head=4, vocab_size=512, seq_len=64)
    config = TrainConfig(model=model_config, device="cuda", batch_size=8, lr=1e-3)
    config = config.replace(**changes)
    config.validate()
    torch.manual_seed(0)
    graphed = build_model(config.model).to(device)
    eager = copy.deepcopy(graphed)
    tokens = torch.randint(0, 512, (20_000,), dtype=torch.int32, device=device)
    plan = plan_step(config, device, graphed)
    assert plan.compile and plan.cuda_graph and plan.ce_chunk
    a = TrainStep(graphed, config, device=device, tokens=tokens, batch_size=8, plan=plan)
    eager_plan = StepPlan(
        compile=False,
        cuda_graph=False,
        ce_chunk=plan.ce_chunk,
        autocast=plan.autocast,
        fused_adamw=True,
    )
    b = TrainStep(eager, config, device=device, tokens=tokens, batch_size=8, plan=eager_plan)
    for _ in range(8):  # warm-up steps, capture, replays
        a(lr=1e-3, seq_len=64)
        b(lr=1e-3, seq_len=64)
    assert a._graph is not None
    loss_a, bad = a.read_loss()
    assert not bad and math.isfinite(loss_a)
    assert loss_a == pytest.approx(b.read_loss()[0], rel=2e-2)
    for p, q in zip(graphed.parameters(), eager.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=5e-2, atol=5e-3)
