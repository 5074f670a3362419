"""What the benchmark needs to know about its device: its name, its bf16 peak, and how to wait
for it and empty it between measurements."""

from __future__ import annotations

import gc

import torch

from study.device import cpu_model, device_name

# Dense bf16 tensor-core peaks (vendor datasheets, SXM parts), by a substring of the device name.
PEAK_BF16_FLOPS: dict[str, float] = {
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
}


def peak_flops(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None where it is not known (every CPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def synchronize(device: torch.device) -> None:
    """Wait until the device has finished the work queued so far."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def free(device: torch.device) -> None:
    """Drop compiled code and cached memory between measurements."""
    torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def device_label(device: torch.device) -> str:
    """The device as a results table names it; a CPU with its model and the threads measured on
    (the bench fixes the thread count, unlike a trial, whose tuner changes it)."""
    if device.type == "cpu":
        return f"{cpu_model()}, {torch.get_num_threads()} threads"
    return device_name(device)
