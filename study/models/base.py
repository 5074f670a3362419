"""The contract between a model and the harness, and what the next-token models share.

``LanguageModel`` is what the training step, the evaluation and the sampler call; every model of
the zoo (GPT, LSTM, masked diffusion) implements it, so none of them is chosen by its class.
``NextTokenModel`` is the part the autoregressive models have in common: logits from hidden
states and a tied head, their cross-entropy, their held-out NLL through the chunked head, and
sampling token by token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, Self

import torch
import torch.nn.functional as F
from torch import nn

from study.config import ModelConfig
from study.models.loss import ce_chunk_rows, linear_nll_sum, softcap


def dropout(x: torch.Tensor, p: float, *, training: bool) -> torch.Tensor:
    """Dropout with probability ``p`` while training; with ``p`` 0 the tensor itself (no draw
    from the generator, so a network without dropout computes exactly what it did before)."""
    return F.dropout(x, p, training=training) if p else x


class LanguageModel(Protocol):
    """A language model as the harness sees it (and the few ``nn.Module`` methods it uses).

    ``nll_is_bound``: ``nll_sum`` is an upper bound (the diffusion ELBO), not an exact NLL.
    ``step_fusable``: ``loss(x, y)`` is exactly the mean cross-entropy of
    ``hidden(x) @ head_weight.T`` against ``y`` and the forward pass can be captured in a CUDA
    graph, so the training step may replace ``loss`` by the fused chunked head and a graph
    (measured for the GPT only).
    """

    config: ModelConfig
    nll_is_bound: bool
    step_fusable: bool
    training: bool

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, T, d_model) for token ids (B, T)."""
        ...

    @property
    def head_weight(self) -> torch.Tensor:
        """The output projection (vocab, d_model): logits = hidden @ head_weight.T."""
        ...

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids (B, T)."""
        ...

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean training loss (float32 scalar) of inputs x and targets y, each (B, T)."""
        ...

    def nll_sum(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed held-out NLL in nats (or its upper bound) of targets y (B, T) given x."""
        ...

    def generate(
        self,
        prompt_ids: list[int],
        *,
        n_tokens: int,
        seed: int,
        temperature: float = 0.8,
        top_k: int = 40,
    ) -> list[int]:
        """``n_tokens`` new ids after ``prompt_ids`` (the new ids only), seeded."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def modules(self) -> Iterator[nn.Module]: ...

    def train(self, mode: bool = True) -> Self: ...

    def to(self, device: torch.device) -> Self: ...


class NextTokenModel(nn.Module):
    """Base of the autoregressive models: subclasses give ``hidden`` and ``head_weight``."""

    config: ModelConfig
    nll_is_bound = False
    step_fusable = False

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def head_weight(self) -> torch.Tensor:
        raise NotImplementedError

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of hidden states ``h`` (..., d_model): the head, tanh soft-capped at
        ``config.logit_softcap`` when it is > 0 (``softcap``)."""
        return softcap(F.linear(h, self.head_weight), self.config.logit_softcap)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab)."""
        return self.logits(self.hidden(idx))

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy, in float32."""
        return F.cross_entropy(self(x).flatten(0, 1).float(), y.flatten().long())

    def nll_sum(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed NLL of y through the chunked head: the whole (B, T, V) logits never exist."""
        h = self.hidden(x)
        chunk = ce_chunk_rows(
            x.device,
            vocab_size=self.config.vocab_size,
            half=torch.is_autocast_enabled(x.device.type),
        )
        return linear_nll_sum(
            h.flatten(0, 1),
            self.head_weight,
            y.flatten(),
            chunk=chunk,
            cap=self.config.logit_softcap,
        )

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: list[int],
        *,
        n_tokens: int,
        seed: int,
        temperature: float = 0.8,
        top_k: int = 40,
    ) -> list[int]:
        """Sample token by token from the last position's logits over the last ``seq_len``
        ids, with temperature and top-k; returns the new ids only."""
        was_training = self.training
        self.eval()
        device = self.head_weight.device
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        ids = torch.tensor([prompt_ids or [0]], dtype=torch.long, device=device)
        new: list[int] = []
        for _ in range(n_tokens):
            last = self.hidden(ids[:, -self.config.seq_len :])[:, -1, :]  # (1, d_model)
            logits = self.logits(last).float() / temperature  # (1, vocab)
            if top_k:
                kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            ids = torch.cat((ids, nxt), dim=1)
            new.append(int(nxt))
        self.train(was_training)
        return new
