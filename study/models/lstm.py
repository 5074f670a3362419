"""An LSTM language model of the same shape vocabulary as the GPT: the recurrent baseline.

Token embedding, ``n_layer`` stacked LSTM layers of width ``d_model``, a final LayerNorm and an
output projection tied to the embedding (counted once). ``n_head``, ``pos`` and ``mlp`` do not
apply: the recurrence carries position and there is no attention or MLP. Dropout, when asked
for, on the embeddings, between layers and on the outputs, never on the recurrence. A
``NextTokenModel`` like the GPT: loss, exact held-out NLL and sampling come from there; only
``hidden`` is its own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from study.config import ModelConfig
from study.device import cpu_has_bf16
from study.models.base import NextTokenModel, dropout


class LSTMLM(NextTokenModel):
    """Embedding -> n_layer x LSTM(d_model) -> LayerNorm -> tied head."""

    step_fusable = False  # its cuDNN recurrence was never measured inside a CUDA graph

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.wte = nn.Embedding(config.vocab_size, d)
        # Dropout on the connections between time steps' inputs and outputs, never on the
        # recurrence itself (Zaremba et al. 2014): the embeddings, between layers, the outputs.
        self.dropout = config.dropout
        between = config.dropout if config.n_layer > 1 else 0.0  # one layer: nothing between
        self.lstm = nn.LSTM(d, d, num_layers=config.n_layer, batch_first=True, dropout=between)
        self.ln_f = nn.LayerNorm(d, bias=False)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        self.head.weight = self.wte.weight  # tied: counted once
        # Embedding std 1/sqrt(d): inputs of unit norm for the LSTM, logits of unit scale at init.
        nn.init.normal_(self.wte.weight, mean=0.0, std=1.0 / math.sqrt(d))
        # Forget-gate bias 1 (Jozefowicz et al. 2015): remember by default early in training.
        # PyTorch packs gates as (input, forget, cell, output) in each bias of shape (4 d,).
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias_ih"):
                    p[d : 2 * d].fill_(1.0)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """Normalised LSTM outputs (B, T, d_model), zero initial state."""
        x = dropout(self.wte(idx), self.dropout, training=self.training)  # (B, T, d_model)
        if (
            x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and (torch.get_autocast_dtype("cpu") == torch.float16 or not cpu_has_bf16())
        ):
            # oneDNN has no float16 LSTM kernel, and no bfloat16 one on CPUs without native
            # bf16 (it fails to build the primitive): there the recurrence runs in float32.
            with torch.autocast("cpu", enabled=False):
                h, _ = self.lstm(x.float())
        else:
            h, _ = self.lstm(x)  # (B, T, d_model)
        return self.ln_f(dropout(h, self.dropout, training=self.training))

    @property
    def head_weight(self) -> torch.Tensor:
        return self.head.weight
