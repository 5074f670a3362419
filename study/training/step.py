"""The training step, built once per job and made as fast as the device allows.

One optimizer step is: draw ``grad_accum`` micro-batches of random windows from a token array
that lives on the device, forward and backward each, clip the gradient norm, apply AdamW. What
makes it fast for tiny models, where the cost is kernel launches and memory traffic rather than
arithmetic (each lever measured by ``python -m bench``):

* **One CUDA graph per step** on CUDA: forward, backward, clipping, the optimizer and the loss
  bookkeeping are captured once and replayed, so a step costs one launch on the host. The learning
  rate is a device tensor updated in place; AdamW is fused and capturable.
* **No host syncs**: losses and the NaN flag are summed on the device and read only when the trainer
  logs; the host stays at most ``MAX_IN_FLIGHT`` steps ahead of the device (an event wait, which
  never stalls it), so the budget clock stays honest.
* **A fused output projection and cross-entropy** for the GPT: the (tokens x vocab) logits, the
  biggest tensor of a tiny model, are made, turned into their gradient and consumed chunk by chunk
  in the forward pass, so the full logits never exist and no float32 copy or second pass over
  them is made (on a CPU the chunks are cache-sized). On CUDA the gradient comes from Triton
  (``study.models.triton_ce``): at d_model <= 128 straight from the hidden states and the head, so the
  logits never reach memory at all; wider, in one pass over cuBLAS's logits.
* **torch.compile** of the transformer's repeated block, once for every layer and every depth
  (regional compilation, ``study.training.regional``), and of the chunk's softmax gradient, bf16
  autocast on CUDA. Without the graph the compiled step is host-bound; without compile the graph replays
  unfused kernels: each alone is 2.8-4x slower than both together at 1 M parameters on an H100.
* On a CPU: eager, bf16 autocast where the CPU has native bf16 (``study.device.autocast_dtype``),
  and an AdamW that does not import ``torch._dynamo`` (``study.training.optim.ForeachAdamW``).

The fused head lives in ``study.models.loss``, the optimizers in ``study.training.optim``, the
plan (how the step runs on a device) in ``study.training.plan``. Which models may
be fused and graphed their ``LanguageModel.step_fusable`` says. ``TrainStep`` is the one place
that builds the step; the trainer and the benchmark both use it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast

import torch

from study.config import TrainConfig
from study.device import autocast, eager_attention
from study.models import LanguageModel
from study.models.loss import compile_head_behind, head_kernels, linear_cross_entropy
from study.training.ema import WeightAverage
from study.training.optim import make_optimizer, set_schedule
from study.training.plan import StepPlan, plan_step
from study.training.regional import make_trunk

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 3  # optimizer steps the host may queue ahead of the device
GRAPH_WARMUP = 3  # eager steps at a new batch shape before its CUDA graph is captured


# --------------------------------------------------------------------------- batches


class Batches:
    """Random windows of a token array that lives on the device: no host copies per step."""

    def __init__(self, tokens: torch.Tensor, *, seed: int) -> None:
        self.tokens = tokens
        self.generator = torch.Generator(device=tokens.device)
        self.generator.manual_seed(seed)
        self._offsets: dict[int, torch.Tensor] = {}

    def _windows(self, rows: int, seq_len: int) -> torch.Tensor:
        n = self.tokens.numel() - seq_len - 1
        starts = torch.randint(0, n, (rows, 1), device=self.tokens.device, generator=self.generator)
        offsets = self._offsets.get(seq_len)
        if offsets is None:
            offsets = torch.arange(seq_len + 1, device=self.tokens.device)
            self._offsets[seq_len] = offsets
        return self.tokens[starts + offsets]  # (rows, T + 1)

    def sample(self, rows: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``rows`` windows as int64 inputs and targets, each (rows, seq_len)."""
        window = self._windows(rows, seq_len).long()
        return window[:, :-1], window[:, 1:]

    def sample_into(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Fill preallocated int64 ``x`` and ``y`` (rows, seq_len) in place (graph inputs)."""
        window = self._windows(x.size(0), x.size(1))
        x.copy_(window[:, :-1])
        y.copy_(window[:, 1:])


# --------------------------------------------------------------------------- the loss


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_loss(model: LanguageModel, plan: StepPlan) -> Loss:
    """``loss(x, y)``: the mean training loss, as ``model.loss(x, y)`` computes it, the plan's
    way (with ``plan.ce_chunk``: the model's hidden states through the fused chunked head)."""
    if not plan.ce_chunk:
        return cast(Loss, torch.compile(model.loss, dynamic=False)) if plan.compile else model.loss
    dtype = plan.autocast or torch.float32
    trunk = make_trunk(
        model,
        dtype,
        compile=plan.compile,
        regional=plan.regional,
        autotune=plan.autotune,
        embed=plan.embed_region,
        norm=plan.norm_region,
    )
    head = model.head_weight
    softmax_grad, logits_grad = head_kernels(
        plan.ce_kernel if dtype is not torch.float32 else "torch",
        device=head.device,
        vocab_size=head.size(0),
        compile=plan.compile,
        cap=model.config.logit_softcap,
    )

    behind: list[threading.Thread | None] = []  # the head kernel's compilation, once

    def attention() -> AbstractContextManager[Any]:
        """The attention backends the trunk may use: where it compiles, the ones it is traced
        with, so the CUDA graph replays them too (study.device.eager_attention)."""
        if plan.cudnn_attention:
            return contextlib.nullcontext()
        return eager_attention(head.device)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not behind and plan.cuda_graph and plan.head_behind:  # the first step
            rows = min(plan.ce_chunk, x.numel())
            behind.append(
                compile_head_behind(
                    softmax_grad,
                    logits_grad,
                    rows=rows,
                    d_model=head.size(1),
                    vocab_size=head.size(0),
                    dtype=dtype,
                    device=head.device,
                )
            )
        with attention():
            h = trunk(x)
        if behind and behind[0] is not None:
            behind[0].join()
            behind[0] = None
        return linear_cross_entropy(
            h.flatten(0, 1),
            head,
            y.flatten(),
            chunk=plan.ce_chunk,
            softmax_grad=softmax_grad,
            logits_grad=logits_grad,
        )

    return loss


# --------------------------------------------------------------------------- the step


def backward_micro_batches(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    amp: Callable[[], AbstractContextManager[Any]],
    scale: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> torch.Tensor:
    """Forward and backward each micro-batch ``x[i], y[i]`` of (grad_accum, rows, T), adding to
    ``.grad`` the (scaled) gradient of the mean loss over all of them: each micro-batch's mean
    loss is divided by ``grad_accum``. Returns the detached float32 losses, (grad_accum,)."""
    accum = x.size(0)
    losses = []
    for i in range(accum):
        with amp():
            loss = loss_fn(x[i], y[i])
        scale(loss / accum if accum > 1 else loss).backward()
        losses.append(loss.detach().float())
    return torch.stack(losses)


class TrainStep:
    """Callable optimizer step for ``model`` on ``device``, sampling from ``tokens`` (on device).

    ``step(lr=..., seq_len=...)`` runs one optimizer step at ``seq_len`` (``batch_size`` rows at
    the full length, more at shorter lengths so tokens per step stay fixed) and returns the tokens
    it trained on. Losses and the NaN flag stay on the device until ``read_loss`` or ``diverged``.
    """

    def __init__(
        self,
        model: LanguageModel,
        config: TrainConfig,
        *,
        device: torch.device,
        tokens: torch.Tensor,
        batch_size: int,
        plan: StepPlan | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.batch_size = batch_size
        self.plan = plan or plan_step(config, device, model)
        self.batches = Batches(tokens, seed=config.seed)
        dtype = self.plan.autocast
        self._amp = autocast(device, dtype)
        # A captured graph reads the learning rate from a device tensor updated in place.
        lr: float | torch.Tensor = config.lr
        if self.plan.cuda_graph:
            lr = torch.tensor(config.lr, dtype=torch.float32, device=device)
        self.optimizer = make_optimizer(model, config, fused=self.plan.fused_adamw, lr=lr)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
        self.loss_fn = make_loss(model, self.plan)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.ema = WeightAverage(self.params, decay=config.ema_decay) if config.ema_decay else None
        self._loss_sum = torch.zeros((), device=device)
        self._loss_count = 0
        self._bad = torch.zeros((), dtype=torch.bool, device=device)
        self._bad_host = torch.zeros((), dtype=torch.bool, pin_memory=device.type == "cuda")
        self._events: collections.deque[Any] = collections.deque()
        self._shape: tuple[int, int] | None = None
        self._x = self._y = torch.empty(0)
        self._warm = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._side: torch.cuda.Stream | None = None
        self.steps = 0

    def rows_at(self, seq_len: int) -> int:
        """Rows per micro-batch at ``seq_len``: tokens per step stay as at the full length."""
        return max(1, self.batch_size * self.config.model.seq_len // seq_len)

    def __call__(self, *, lr: float, seq_len: int) -> int:
        rows = self.rows_at(seq_len)
        accum = self.config.grad_accum
        if self._shape != (rows, seq_len):
            self._new_shape(rows, seq_len)
        self.batches.sample_into(self._x.view(-1, seq_len), self._y.view(-1, seq_len))
        set_schedule(self.optimizer, lr=lr, step=self.steps, config=self.config)
        if self.plan.cuda_graph:
            self._graph_step()
        else:
            self._body()
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        self._loss_count += accum
        self.steps += 1
        self._throttle()
        return rows * seq_len * accum

    def _new_shape(self, rows: int, seq_len: int) -> None:
        accum = self.config.grad_accum
        self._graph = None  # a new shape never goes back to an old one: free its memory
        self.optimizer.zero_grad(set_to_none=True)
        self._x = torch.empty((accum, rows, seq_len), dtype=torch.long, device=self.device)
        self._y = torch.empty_like(self._x)
        self._shape = (rows, seq_len)
        self._warm = 0

    def _body(self) -> None:
        """Micro-batches, clipping, optimizer: the work one graph replay does."""
        losses = backward_micro_batches(
            self.loss_fn, self._x, self._y, amp=self._amp, scale=self.scaler.scale
        )
        self._loss_sum += losses.sum()
        self._bad |= ~torch.isfinite(losses).all()
        optimizer = cast(torch.optim.Optimizer, self.optimizer)  # ForeachAdamW duck-types it
        if self.config.grad_clip > 0:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.config.grad_clip, foreach=True)
        self.scaler.step(optimizer)
        self.scaler.update()

    def _graph_step(self) -> None:
        if self._graph is not None:
            self._graph.replay()
            return
        if self._side is None:
            self._side = torch.cuda.Stream(self.device)
        main = torch.cuda.current_stream(self.device)
        if self._warm < GRAPH_WARMUP:
            # Real steps on a side stream: compile, autotune, create optimizer state and
            # library handles before capture (PyTorch's recipe for whole-network capture).
            self._side.wait_stream(main)
            with torch.cuda.stream(self._side):
                self._body()
                self.optimizer.zero_grad(set_to_none=True)
            main.wait_stream(self._side)
            self._warm += 1
            return
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates .grad in the graph pool
        with torch.cuda.graph(graph, stream=self._side):
            self._body()
        self._graph = graph
        log.debug("captured a CUDA graph for batch shape %s", self._shape)
        graph.replay()

    def _throttle(self) -> None:
        """Keep the host at most MAX_IN_FLIGHT steps ahead; copy the NaN flag back on the way."""
        event: torch.cuda.Event | torch.mps.Event
        if self.device.type == "cuda":
            self._bad_host.copy_(self._bad, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        elif self.device.type == "mps" and hasattr(torch, "mps") and hasattr(torch.mps, "Event"):
            event = torch.mps.Event()
            event.record()
        else:
            return
        self._events.append(event)
        if len(self._events) > MAX_IN_FLIGHT:
            self._events.popleft().synchronize()

    def diverged(self) -> bool:
        """Whether a loss was NaN or infinite. On CUDA this reads a flag copied back a few steps
        behind (no sync); elsewhere it reads the flag itself (CPU work is already done)."""
        if self.device.type == "cuda":
            return bool(self._bad_host)
        if self.device.type == "mps" and self.steps % 10:
            return False
        return bool(self._bad.item())

    def read_loss(self) -> tuple[float, bool]:
        """Mean training loss since the last read (NaN if no step), and whether any loss was not
        finite. Waits for the device."""
        total = float(self._loss_sum.item())
        count, self._loss_count = self._loss_count, 0
        self._loss_sum.zero_()  # in place: a captured graph holds this tensor
        return (total / count if count else float("nan")), bool(self._bad.item())

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()
