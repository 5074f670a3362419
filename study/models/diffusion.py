"""A masked (absorbing-state) discrete diffusion language model in the D3PM family.

Forward process: each token of a length-T sequence is replaced, independently, by the absorbing
``[MASK]`` id (``vocab_size``) with probability t, t from 0 (clean) to 1 (all masked). The
reverse model is a bidirectional transformer that predicts the clean token at every masked
position (MDLM's "SUBS" parameterisation: it never predicts ``[MASK]`` and copies unmasked tokens,
so only masked positions cost anything). It has no time input: the share of masks tells it t.

The bound. For this process the continuous-time ELBO (Sahoo et al. 2024, MDLM; Shi et al. 2024,
MD4) with a time-independent network, integrated over t, is the any-order autoregressive bound
(Hoogeboom et al. 2022; Ou et al. 2024):

    -log p(x_1..x_T) <= sum_{k=1..T} (1/k) E_{|M| = k} [ sum_{i in M} -log p(x_i | x_{~M}) ]

where the expectation is over the C(T, k) sets M of k masked positions, and p(x) is the
distribution of the sampler below run with one token unmasked per step (a mixture over uniformly
random unmasking orders), so it is a proper normalised distribution over length-T sequences.
Drawing k uniformly from 1..T, ``T/k * sum_{i in M} -log p(x_i | x_{~M})`` is an unbiased
estimate of the right-hand side, and ``mean_{i in M} -log p(x_i | x_{~M})`` one of the
bound per token: that is the training loss (``loss``). ``nll_sum`` evaluates the bound with k
stratified over the batch and ``eval_samples`` draws per window, from a fixed seed (the same
model and windows always give the same number).

What the bound covers, for a per-token comparison with the autoregressive models: the trainer
evaluates windows of T + 1 ids as inputs x = w[:-1] and targets y = w[1:]. A GPT or LSTM scores
-log p(y | w[0]): T tokens with one token of context before them. ``nll_sum(x, y)`` bounds
-log p(y): the same T target tokens, whose UTF-8 bytes are the ones bits per byte divides by, but
with no context before the window (at most one token of information more to pay, out of T).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from study.config import ModelConfig
from study.models.gpt import Transformer, init_gpt2_


def random_masks(
    batch: int, seq_len: int, *, device: torch.device, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, a number of masked positions k and a mask with exactly k positions set.

    k is stratified over the batch and shuffled: row b gets stratum pi(b) of a random permutation
    pi, k = floor((pi(b) + u) / B * T) + 1 with one shared u ~ U(0, 1), so each row's k is
    uniform on 1..T on its own while the batch covers the range evenly (low variance).

    Returns:
        k: (B,) float, in 1..T. mask: (B, T) bool, k True entries per row at random positions.
    """
    u = torch.rand((), device=device, generator=generator)
    strata = torch.randperm(batch, device=device, generator=generator)
    k = torch.floor((strata + u) / batch * seq_len).clamp(max=seq_len - 1) + 1  # (B,)
    scores = torch.rand(batch, seq_len, device=device, generator=generator)
    ranks = scores.argsort(dim=1).argsort(dim=1)  # (B, T): a random permutation of 0..T-1
    return k, ranks < k[:, None]


class DiffusionLM(nn.Module):
    """Bidirectional transformer denoiser for absorbing-state diffusion (a ``LanguageModel``).

    ``forward(z)`` gives clean-token logits for partly masked ids, ``loss(x, y)`` the training
    loss (per-token bound estimate on x; y is ignored), ``nll_sum(x, y)`` the summed bound on
    -log p(y) in nats, ``generate`` samples by iterative unmasking. The embedding has
    ``vocab_size + 1`` rows (the last is ``[MASK]``); the output head is tied to the first
    ``vocab_size`` rows.
    """

    nll_is_bound = True
    step_fusable = False  # the loss is not next-token cross-entropy

    def __init__(self, config: ModelConfig, *, eval_samples: int = 4, eval_seed: int = 0) -> None:
        super().__init__()
        self.config = config
        self.mask_id = config.vocab_size
        self.eval_samples = eval_samples
        self.eval_seed = eval_seed
        self.transformer = Transformer(config, causal=False, n_tokens=config.vocab_size + 1)
        init_gpt2_(self, config)  # as the causal model

    def hidden(self, z: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states (B, T, d_model) of partly masked ids z (B, T)."""
        return self.transformer(z)

    @property
    def head_weight(self) -> torch.Tensor:
        """The tied head: the embedding without its [MASK] row, so [MASK] is never predicted."""
        return self.transformer.wte.weight[: self.mask_id]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Clean-token logits (B, T, vocab) for partly masked ids z (B, T); never [MASK]."""
        return F.linear(self.hidden(z), self.head_weight)

    def masked_nll(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask k random positions per row of x (B, T), k uniform on 1..T, stratified.

        Returns:
            nll: (B,) float32, summed -log p(x_i | unmasked) over the masked positions.
            k: (B,) float, the number of masked positions of each row.
        """
        B, T = x.shape
        k, mask = random_masks(B, T, device=x.device, generator=generator)
        z = x.masked_fill(mask, self.mask_id)
        logits = self(z)  # (B, T, vocab)
        nll = F.cross_entropy(
            logits.flatten(0, 1).float(), x.flatten().long(), reduction="none"
        ).view(B, T)
        return (nll * mask).sum(dim=1), k

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss: the unbiased per-token estimate of the bound on x, mean over rows
        of (masked NLL / k). y is not used (the objective is on x, not next-token)."""
        del y
        nll, k = self.masked_nll(x)
        return (nll / k).mean()

    def nll_sum(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed upper bound (ELBO) on -log p(y) over the rows of y (B, T), in nats.

        An unbiased Monte Carlo estimate of the bound, ``eval_samples`` draws per row, from a
        generator seeded with ``eval_seed`` on each call (deterministic). x is not used.
        """
        del x
        T = y.size(1)
        generator = torch.Generator(device=y.device)
        generator.manual_seed(self.eval_seed)
        total = torch.zeros((), dtype=torch.float64, device=y.device)
        for _ in range(self.eval_samples):
            nll, k = self.masked_nll(y, generator)
            total += (nll.double() * T / k.double()).sum()
        return total / self.eval_samples

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
        """Sample ``n_tokens`` after the prompt by iterative unmasking, one token per step in a
        uniformly random order (the sampler whose likelihood the bound bounds), each drawn with
        the same temperature and top-k as the autoregressive sample.

        Longer than the context: blocks of new tokens, each conditioned on up to the last
        seq_len - block ids. Returns the new ids only.
        """
        was_training = self.training
        self.eval()
        device = self.head_weight.device
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
        T = self.config.seq_len
        ids = list(prompt_ids)
        new: list[int] = []
        while len(new) < n_tokens:
            block = min(n_tokens - len(new), T - min(len(ids), T // 2))
            context = ids[len(ids) - (T - block) :] if T - block < len(ids) else ids
            z = torch.tensor([[*context, *[self.mask_id] * block]], device=device)  # (1, L)
            order = torch.randperm(block, device=device, generator=generator) + len(context)
            for pos in order.tolist():
                logits = self(z)[0, pos].float() / temperature  # (vocab,)
                if top_k:
                    kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                z[0, pos] = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
            out = z[0, len(context) :].tolist()
            ids.extend(out)
            new.extend(out)
        self.train(was_training)
        return new
