"""The textbook baseline the trainer is measured against: a plain GPT-2 and its training step.

The module is GPT-2 as nanoGPT writes it (learned positions, biases, GELU MLP of width 4d,
``scaled_dot_product_attention``, tied embeddings, GPT-2 initialisation); the step is the
textbook loop: forward, backward, clip the gradient norm to 1, AdamW, zero the gradients
(``textbook_step``), or the same loop with every standard speed tool PyTorch ships, the whole
step captured in one CUDA graph (``GraphedStep``). Batches come from the same on-device token
sampler the trainer uses, so only the step differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(d_model, 3 * d_model)
        self.c_proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, n_head, T, hd)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, d_model)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d_model, 4 * d_model)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.ln_2 = nn.LayerNorm(d_model)
        self.mlp = MLP(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TextbookGPT(nn.Module):
    """GPT-2 (nanoGPT's ``model.py`` without dropout): ``forward(idx, targets)`` -> mean CE."""

    def __init__(
        self, *, n_layer: int, d_model: int, n_head: int, vocab_size: int, seq_len: int
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, d_model)
        self.wpe = nn.Embedding(seq_len, d_model)
        self.h = nn.ModuleList(Block(d_model, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, d_model)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def textbook_optimizer(
    model: nn.Module, *, lr: float | torch.Tensor, fused: bool = False, capturable: bool = False
) -> torch.optim.AdamW:
    """nanoGPT's AdamW: weight decay 0.1 on matrices and embeddings, none on biases and norms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
        fused=True if fused else None,
        capturable=capturable,
    )


def textbook_step(
    model: TextbookGPT,
    sample: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    *,
    device: torch.device,
    bf16: bool = False,
    compile: bool = False,
    fused: bool = False,
    lr: float = 3e-3,
) -> Callable[[], torch.Tensor]:
    """One optimizer step of ``model`` on the next ``sample()`` as a textbook loop runs it:
    float32, eager, PyTorch's default AdamW, unless asked for bf16 autocast, ``torch.compile`` of
    the model or fused AdamW (what a competent user turns on for a GPU). Each call returns the
    step's loss (no host synchronisation)."""
    optimizer = textbook_optimizer(model, lr=lr, fused=fused)
    run: nn.Module = torch.compile(model) if compile else model  # type: ignore[assignment]

    def amp() -> AbstractContextManager[Any]:
        if bf16:
            return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
        return nullcontext()

    def step() -> torch.Tensor:
        x, y = sample()
        with amp():
            loss = run(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


class GraphedStep:
    """The textbook step with every standard speed tool on: bf16 autocast, ``torch.compile``,
    fused capturable AdamW with the learning rate as a device tensor, and the whole step
    (forward, backward, clip, optimizer) captured in one CUDA graph and replayed.

    Each call is one optimizer step on the next ``sample()``, as for ``textbook_step``, and
    returns its loss. The first ``warmup`` calls run eagerly on a side stream: compilation, the
    optimizer's state and the libraries' workspaces must exist before capture, and capture must
    not see the default stream's pending work. The next call captures the step, with the batch
    in static input buffers and the gradients left unset so that backward allocates them in the
    graph's own memory, then replays it; later calls copy their batch into the buffers and replay.
    """

    def __init__(
        self,
        model: TextbookGPT,
        sample: Callable[[], tuple[torch.Tensor, torch.Tensor]],
        *,
        device: torch.device,
        lr: float = 3e-3,
        warmup: int = 3,
    ) -> None:
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, not {device.type}")
        self.model, self.sample, self.warmup = model, sample, warmup
        self.lr = torch.tensor(lr, device=device)  # a tensor: a new value needs no new capture
        self.optimizer = textbook_optimizer(model, lr=self.lr, fused=True, capturable=True)
        self.run: nn.Module = torch.compile(model)  # type: ignore[assignment]
        self.side = torch.cuda.Stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0
        self.x: torch.Tensor | None = None  # static inputs, loss: the graph reads and writes these
        self.y: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None

    def _train(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # The autocast cache would hold casts made during capture; the graph must own them.
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False):
            loss = self.run(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return loss.detach()

    def __call__(self) -> torch.Tensor:
        x, y = self.sample()
        if self.x is None or self.y is None:
            self.x, self.y = torch.empty_like(x), torch.empty_like(y)
        self.x.copy_(x)
        self.y.copy_(y)
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
        elif self.calls <= self.warmup:
            main = torch.cuda.current_stream(self.side.device)
            self.side.wait_stream(main)
            with torch.cuda.stream(self.side):
                self.loss = self._train(self.x, self.y)
                self.optimizer.zero_grad(set_to_none=True)
            main.wait_stream(self.side)
        else:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.loss = self._train(self.x, self.y)
            graph.replay()
            self.graph = graph
        assert self.loss is not None
        return self.loss
