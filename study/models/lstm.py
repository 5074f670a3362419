"""An LSTM language model of the same shape vocabulary as the GPT: the recurrent baseline.

Token embedding, ``n_layer`` stacked LSTM layers of width ``d_model``, a final LayerNorm and an
output projection tied to the embedding (counted once). ``n_head``, ``pos`` and ``mlp`` do not
apply: the recurrence carries position and there is no attention or MLP. Same interface as the
GPT: ``forward(idx)`` gives logits, ``forward(idx, targets)`` the mean next-token cross-entropy,
so training, evaluation (exact NLL) and sampling go through the trainer's generic paths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from study.config import ModelConfig


class LSTMLM(nn.Module):
    """Embedding -> n_layer x LSTM(d_model) -> LayerNorm -> tied head."""

    nll_is_bound = False

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.wte = nn.Embedding(config.vocab_size, d)
        self.lstm = nn.LSTM(d, d, num_layers=config.n_layer, batch_first=True)
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

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) without targets; mean next-token cross-entropy with them."""
        x = self.wte(idx)  # (B, T, d_model)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and (
            torch.get_autocast_dtype("cpu") == torch.float16
        ):
            # oneDNN has no float16 LSTM kernel: on CPU the recurrence runs in float32.
            with torch.autocast("cpu", enabled=False):
                h, _ = self.lstm(x.float())
        else:
            h, _ = self.lstm(x)  # (B, T, d_model), zero initial state
        logits = self.head(self.ln_f(h))  # (B, T, vocab)
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten().long())
