"""How the training step runs on one device: ``StepPlan``, and ``plan_step``, which picks the
fastest measured plan for a model and device (``study.training.step`` builds the step from it;
the benchmark can override any field)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from study.config import TrainConfig
from study.device import autocast_dtype
from study.models import LanguageModel
from study.models.loss import CeKernel, ce_chunk_rows, cuda_ce_kernel, triton_ready
from study.training.regional import repeated_blocks


@dataclass(frozen=True)
class StepPlan:
    """How the step runs on one device. ``plan_step`` picks it; the benchmark can override it.

    ``ce_chunk`` is rows per chunk of the fused projection + cross-entropy (0: not fused);
    ``ce_kernel`` how a chunk's gradient is made (``study.models.loss.head_kernels``).
    """

    compile: bool
    cuda_graph: bool
    ce_chunk: int
    autocast: torch.dtype | None
    fused_adamw: bool
    ce_kernel: CeKernel = "torch"
    regional: bool = False  # compile by regions: the repeated block once for every layer
    autotune: bool = False  # compile with Inductor's max-autotune (study.training.regional)
    embed_region: bool = True  # by regions: the embedding compiled as a region too
    norm_region: bool = True  # by regions: the final norm and cast compiled as a region too
    head_behind: bool = True  # graphed: the head's Triton kernel compiled beside the trunk
    cudnn_attention: bool = False  # let SDPA pick cuDNN's attention (else flash, on CUDA)

    def describe(self) -> str:
        dtype = "fp32" if self.autocast is None else str(self.autocast).removeprefix("torch.")
        compiled = "compile-blocks" if self.regional else "compile"
        if self.regional and not self.embed_region:
            compiled += "-eager-embed"
        if self.regional and not self.norm_region:
            compiled += "-eager-norm"
        parts = [dtype, compiled if self.compile else "eager"]
        if self.compile and self.autotune:
            parts.append("autotune")
        if self.cudnn_attention:
            parts.append("any-attention")
        if self.cuda_graph:
            parts.append("cuda-graph")
        if self.ce_chunk:
            kernel = "" if self.ce_kernel == "torch" else f"-{self.ce_kernel}"
            parts.append(f"fused-ce{kernel}/{self.ce_chunk}")
        else:
            parts.append("plain-ce")
        parts.append("fused-adamw" if self.fused_adamw else "foreach-adamw")
        return " ".join(parts)


def plan_step(config: TrainConfig, device: torch.device, model: LanguageModel) -> StepPlan:
    """The fastest measured way to run ``model``'s step on ``device``.

    CUDA: compile (unless ``config.compile`` is False), bf16 autocast (``precision`` auto), a
    CUDA graph per batch shape and the fused head where the model is ``step_fusable`` (no graph
    with fp16, whose loss scaler syncs the host), fused capturable AdamW. CPU: eager (compiling
    did not pay on the 2-core machine measured, and took 30-60 s of budget), the fused head in
    cache-sized chunks where ``step_fusable``, bf16 autocast where the CPU has native bf16,
    ``ForeachAdamW``. MPS: eager, ``ForeachAdamW``. On CUDA with Triton installed the head's
    gradient by a Triton kernel (``study.models.loss.cuda_ce_kernel``). Compiled with the fused
    head: by regions where the model repeats a block (``study.training.regional``).
    """
    dtype = autocast_dtype(config.precision, device)
    fusable = model.step_fusable
    cuda = device.type == "cuda"
    compile_model = config.compile if config.compile is not None else cuda
    chunk = ce_chunk_rows(device, vocab_size=config.model.vocab_size, half=dtype is not None)
    fused_head = fusable and device.type != "mps"
    return StepPlan(
        compile=compile_model,
        cuda_graph=cuda and fusable and dtype is not torch.float16,
        ce_chunk=chunk if fused_head else 0,
        autocast=dtype,
        fused_adamw=cuda,
        ce_kernel=cuda_ce_kernel(d_model=config.model.d_model) if triton_ready(device) else "torch",
        regional=compile_model and fused_head and bool(repeated_blocks(model)),
    )
