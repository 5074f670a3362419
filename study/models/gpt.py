"""A GPT-2 style decoder, small enough to read in one sitting.

Components in dependency order: positional helpers, attention, MLP, block, the transformer body
(embeddings, blocks, final norm; the diffusion denoiser uses it too), model. Tied input and
output embeddings (or untied), no biases, ``scaled_dot_product_attention`` for attention; dropout (GPT-2's
places: embeddings, attention weights, each residual branch) only when ``config.dropout`` > 0.
Positional schemes: ``learned`` (absolute embedding), ``rope`` (rotary), ``alibi`` (linear
attention bias) and ``none`` (causal masking alone carries position). Off by default: the
embedding shortcut into every block (``embed_shortcut``, modded-nanogpt's and nanochat's) and
value embeddings mixed into the attention values of some layers (``value_embeds``,
modded-nanogpt's).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from study.config import ModelConfig
from study.models.base import NextTokenModel, dropout


def mlp_hidden(config: ModelConfig) -> int:
    """Hidden width of the MLP: 4d for GELU and ReLU^2, 8d/3 rounded up to a multiple of 8 for
    SwiGLU, so all hold about 8 d^2 parameters."""
    if config.mlp in ("gelu", "relu2"):
        return 4 * config.d_model
    return 8 * ((8 * config.d_model // 3 + 7) // 8)


def rope_tables(seq_len: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, ...]:
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, hd/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the head dimension; x is (B, n_head, T, head_dim)."""
    T = x.size(-2)
    cos, sin = cos[:T].to(x.dtype), sin[:T].to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def alibi_bias(n_head: int, seq_len: int, *, causal: bool = True) -> torch.Tensor:
    """ALiBi bias (n_head, T, T): -slope * |query - key|; causal: -inf above the diagonal."""
    slopes = torch.tensor([2 ** (-8 * (i + 1) / n_head) for i in range(n_head)])
    pos = torch.arange(seq_len)
    distance = (pos[:, None] - pos[None, :]).float()  # (T, T), query minus key
    bias = -slopes[:, None, None] * distance.abs()
    return bias.masked_fill(distance < 0, float("-inf")) if causal else bias


def init_gpt2_(model: nn.Module, config: ModelConfig) -> None:
    """GPT-2 init in place: weights N(0, 0.02), residual projections scaled by 1/sqrt(2 n_layer)
    so the residual stream's variance does not grow with depth; norms keep their ones. With
    ``zero_init_proj`` the residual projections and an untied head start at zero (the speedrun
    records: each block starts as the identity), after the same draws as without it. Value
    embedding tables (drawn as the token embedding) draw last, so every other weight is drawn
    as without them."""
    named = sorted(model.named_parameters(), key=lambda item: ".value_embeds." in f".{item[0]}")
    for name, p in named:
        if p.dim() < 2:
            continue
        std = 0.02
        residual = name.endswith(("proj.weight", "down.weight"))
        if residual:
            std = 0.02 / math.sqrt(2 * config.n_layer)
        nn.init.normal_(p, mean=0.0, std=std)
        if config.zero_init_proj and (residual or name == "head.weight"):
            nn.init.zeros_(p)


class RMSNorm(nn.Module):
    """Parameter-free RMSNorm over the last dimension (the speedrun records' norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.size(-1),))


def make_norm(config: ModelConfig) -> nn.Module:
    """The model's norm: LayerNorm without bias (a gain per channel) or parameter-free RMSNorm."""
    if config.norm == "rmsnorm":
        return RMSNorm()
    return nn.LayerNorm(config.d_model, bias=False)


def value_embed_layers(n_layer: int, tables: int) -> list[int | None]:
    """Which value embedding table each layer mixes into its values (None: none): the first
    ``tables`` layers take tables 0, 1, ... and so do the last ``tables`` (modded-nanogpt's
    "012 ... 012"); a layer in both takes its first one, the middle ones none."""
    first = {i: i for i in range(tables)}
    last = {n_layer - tables + j: j for j in range(tables)}
    return [first.get(i, last.get(i)) for i in range(n_layer)]


class Attention(nn.Module):
    """Multi-head self-attention; ``causal=False`` lets every position see every position (the
    diffusion denoiser). ``bias`` (ALiBi) carries its own mask when given. A layer built with
    ``value_embed`` mixes the value embedding ``ve`` it is given into its values by two learned
    scalars, ``v = ve_lambdas[0] * v + ve_lambdas[1] * ve``, both 0.5 at the start (the form and
    start of modded-nanogpt)."""

    def __init__(
        self, config: ModelConfig, *, causal: bool = True, value_embed: bool = False
    ) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.head_dim = config.d_model // config.n_head
        self.causal = causal
        self.qk_norm = config.qk_norm
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.ve_lambdas = nn.Parameter(torch.full((2,), 0.5)) if value_embed else None

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        bias: torch.Tensor | None,
        ve: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, self.head_dim).permute(2, 0, 3, 1, 4)
        # q, k, v: (B, n_head, T, head_dim)
        if self.ve_lambdas is not None and ve is not None:  # ve: (B, T, d_model)
            ve = ve.view(B, T, self.n_head, self.head_dim).transpose(1, 2).to(v.dtype)
            v = self.ve_lambdas[0] * v + self.ve_lambdas[1] * ve
        if self.qk_norm:  # parameter-free RMSNorm of each head's query and key
            q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        p = self.dropout if self.training else 0.0  # on the attention weights
        if bias is not None:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias[:, :T, :T].to(q.dtype), dropout_p=p
            )
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, dropout_p=p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, d_model)
        return self.proj(y)


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = mlp_hidden(config)
        self.kind = config.mlp
        self.swiglu = config.mlp == "swiglu"
        self.up = nn.Linear(config.d_model, (2 if self.swiglu else 1) * hidden, bias=False)
        self.down = nn.Linear(hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        if self.swiglu:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            h = F.gelu(h, approximate="tanh")
        return self.down(h)


class Block(nn.Module):
    def __init__(
        self, config: ModelConfig, *, causal: bool = True, value_embed: bool = False
    ) -> None:
        super().__init__()
        self.ln1 = make_norm(config)
        self.attn = Attention(config, causal=causal, value_embed=value_embed)
        self.ln2 = make_norm(config)
        self.mlp = MLP(config)
        self.dropout = config.dropout

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        bias: torch.Tensor | None,
        ve: torch.Tensor | None = None,
        shortcut: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``shortcut`` (x0, resid_lambda, x0_lambda), the embedding shortcut of this layer:
        the residual stream becomes ``resid_lambda * x + x0_lambda * x0`` first. Mixed here,
        not in the layer loop, so a block compiled by regions fuses it into its first norm."""
        p, training = self.dropout, self.training
        if shortcut is not None:
            x0, resid_lambda, x0_lambda = shortcut  # (B, T, d_model), two 0-d scalars
            x = resid_lambda * x + x0_lambda * x0
        x = x + dropout(self.attn(self.ln1(x), rope, bias, ve), p, training=training)
        return x + dropout(self.mlp(self.ln2(x)), p, training=training)


class Transformer(nn.Module):
    """Token (and learned position) embedding, ``n_layer`` blocks, final norm: the body the GPT
    and the diffusion denoiser share. ``causal`` picks masked or bidirectional attention (and
    ALiBi's form); ``n_tokens`` rows of embedding (the denoiser adds a ``[MASK]`` row).

    ``embed_shortcut``: before block i the residual stream becomes
    ``resid_lambdas[i] * x + x0_lambdas[i] * x0``, x0 the parameter-free RMSNorm of the embedding
    output; the scalars start at 1 and 0, so the network starts as the one without them.
    ``value_embeds`` K: K more embedding tables of ``n_tokens`` x d_model, looked up with the
    same ids, whose rows the layers of ``value_embed_layers`` mix into their attention values."""

    def __init__(self, config: ModelConfig, *, causal: bool, n_tokens: int) -> None:
        super().__init__()
        self.pos = config.pos
        self.dropout = config.dropout
        self.wte = nn.Embedding(n_tokens, config.d_model)
        self.wpe = nn.Embedding(config.seq_len, config.d_model) if config.pos == "learned" else None
        self.ve_layers = value_embed_layers(config.n_layer, config.value_embeds)
        self.blocks = nn.ModuleList(
            Block(config, causal=causal, value_embed=table is not None) for table in self.ve_layers
        )
        self.ln_f = make_norm(config)
        # Built without a draw (``_weight``): init_gpt2_ draws them, after everything else.
        self.value_embeds = nn.ModuleList(
            nn.Embedding(n_tokens, config.d_model, _weight=torch.empty(n_tokens, config.d_model))
            for _ in range(config.value_embeds)
        )
        self.shortcut = config.embed_shortcut
        if config.embed_shortcut:
            self.resid_lambdas = nn.Parameter(torch.ones(config.n_layer))
            self.x0_lambdas = nn.Parameter(torch.zeros(config.n_layer))
        if config.pos == "rope":
            cos, sin = rope_tables(config.seq_len, config.d_model // config.n_head)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if config.pos == "alibi":
            bias = alibi_bias(config.n_head, config.seq_len, causal=causal)
            self.register_buffer("alibi", bias, persistent=False)

    def embed(
        self, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor]]:
        """What the blocks start from, for token ids (B, T): the embedded input x (token and
        learned position embedding, dropout), the embedding shortcut's x0 (None without it) and
        the value embeddings' rows, each (B, T, d_model). One method, so that regional
        compilation (``study.training.regional``) compiles it as one region, the gathers, the
        add and the norm fused, forward and backward."""
        T = idx.size(1)
        x = self.wte(idx)  # (B, T, d_model)
        if self.wpe is not None:
            x = x + self.wpe.weight[:T]
        x = dropout(x, self.dropout, training=self.training)
        x0 = F.rms_norm(x, (x.size(-1),)) if self.shortcut else None  # (B, T, d_model)
        return x, x0, [table(idx) for table in self.value_embeds]

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, T, d_model) for token ids (B, T)."""
        x, x0, values = self.embed(idx)
        rope = (self.rope_cos, self.rope_sin) if self.pos == "rope" else None
        bias = self.alibi if self.pos == "alibi" else None
        for i, block in enumerate(self.blocks):
            # The scalars go in as 0-d tensors, not the index: one compiled block for every layer.
            mix = None if x0 is None else (x0, self.resid_lambdas[i], self.x0_lambdas[i])
            table = self.ve_layers[i]
            x = block(x, rope, bias, None if table is None else values[table], mix)
        return self.ln_f(x)


class GPT(NextTokenModel):
    """Decoder-only transformer: the causal body and a head tied to its token embedding (or,
    with ``untied_head``, a matrix of its own)."""

    step_fusable = True

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = Transformer(config, causal=True, n_tokens=config.vocab_size)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if not config.untied_head:
            self.head.weight = self.transformer.wte.weight  # tied: counted once
        init_gpt2_(self, config)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        return self.transformer(idx)  # (B, T, d_model)

    @property
    def head_weight(self) -> torch.Tensor:
        return self.head.weight
