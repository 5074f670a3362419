"""Model zoo: ``build_model(config)`` and ``count_params(config)``, the one owner of counts.

Every model implements ``LanguageModel`` (``study.models.base``): the contract the training
step, the evaluation and the sampler call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from study.config import ModelConfig
from study.models.base import LanguageModel

__all__ = ["LanguageModel", "ParamCount", "build_model", "count_params", "param_groups"]


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts and training FLOPs per token of one model configuration.

    ``total``: every trainable parameter, the tied input/output embedding counted once (the
    number fits use). ``embedding``: token (and learned position) embeddings, and an untied
    output head (vocab x d_model of its own: the same role as the tied one, counted beside
    it so ``nonembedding`` stays the trunk's and compares across tied and untied models).
    ``nonembedding``: ``total - embedding`` (Kaplan et al.'s N), the embedding shortcut's two
    scalars per layer and the value embeddings' two per layer that takes one included; the
    value embedding tables (``value_embeds`` x vocab x d_model) are embeddings and add no FLOPs
    (a lookup). ``flops_per_token``: training
    FLOPs per token, forward and backward, PaLM convention: 6 x (non-embedding weights + the
    output projection's vocab x d_model) + 12 x n_layer x d_model x seq_len for attention scores.
    """

    total: int
    embedding: int
    nonembedding: int
    flops_per_token: int


def build_model(config: ModelConfig) -> LanguageModel:
    """The model ``config`` describes, freshly initialised from torch's global generator."""
    config.validate()
    if config.arch == "gpt":
        from study.models.gpt import GPT

        return GPT(config)
    if config.arch == "lstm":
        from study.models.lstm import LSTMLM

        return LSTMLM(config)
    if config.arch == "diffusion":
        from study.models.diffusion import DiffusionLM

        return DiffusionLM(config)
    raise NotImplementedError(f"arch {config.arch!r} has no model yet")


def param_groups(model: LanguageModel | nn.Module) -> dict[str, int]:
    """Split ``model``'s parameters into ``embedding`` and ``nonembedding`` (shared tensors once).

    Embeddings are the parameters of ``nn.Embedding`` modules (value embedding tables too) and
    the output head: the tied
    head shares the token embedding's tensor, so it is counted there and only once; an untied
    one is a tensor of its own, counted in full.
    """
    embedding_ids = {
        id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    }
    head = getattr(model, "head_weight", None)
    if isinstance(head, nn.Parameter):  # a slice of the embedding (diffusion) is no tensor
        embedding_ids.add(id(head))
    groups = {"embedding": 0, "nonembedding": 0}
    for p in model.parameters():  # parameters() yields each shared tensor once
        groups["embedding" if id(p) in embedding_ids else "nonembedding"] += p.numel()
    assert sum(groups.values()) == sum(p.numel() for p in model.parameters())
    return groups


def count_params(config: ModelConfig, model: LanguageModel | None = None) -> ParamCount:
    """Counts for ``config``; builds the model on the meta device (no memory) if none is given."""
    if model is None:
        with torch.device("meta"):
            model = build_model(config)
    groups = param_groups(model)
    total = groups["embedding"] + groups["nonembedding"]
    head = config.vocab_size * config.d_model
    attention = 12 * config.n_layer * config.d_model * config.seq_len
    if config.arch == "lstm":
        attention = 0
    flops = 6 * (groups["nonembedding"] + head) + attention
    return ParamCount(
        total=total,
        embedding=groups["embedding"],
        nonembedding=groups["nonembedding"],
        flops_per_token=flops,
    )
