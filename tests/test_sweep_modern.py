"""sweeps.modern: the recipe space reaches every switch with valid configs."""

from __future__ import annotations

from test_sweeps import sample_configs


def test_modern_space_reaches_every_switch_with_valid_configs() -> None:
    found = sample_configs("modern", 80)
    for c in found:
        c.validate()
        assert (c.budget, c.data, c.device, c.seed) == (30.0, "corpus.txt", "cpu", 7)
        assert c.model.d_model % c.model.n_head == 0
        if c.optimizer == "adamw":
            assert c.muon_lr == 0.02  # not searched without Muon
    assert {c.optimizer for c in found} == {"adamw", "muon"}
    assert {c.schedule for c in found} == {"cosine", "wsd"}
    assert {c.model.mlp for c in found} == {"swiglu", "gelu", "relu2"}
    assert {c.model.norm for c in found} == {"layernorm", "rmsnorm"}
    for switch in ("qk_norm", "untied_head", "zero_init_proj"):
        assert {getattr(c.model, switch) for c in found} == {False, True}, switch
    assert {c.model.logit_softcap for c in found} == {0.0, 15.0, 30.0}
    assert {c.model.vocab_size for c in found} == {1024, 2048, 4096}
    assert {c.ema_decay for c in found} == {0.0, 0.99, 0.999}
    assert None in {c.batch_size for c in found} and 16 in {c.batch_size for c in found}
    muon_lrs = [c.muon_lr for c in found if c.optimizer == "muon"]
    assert all(0.005 <= lr <= 0.08 for lr in muon_lrs)
