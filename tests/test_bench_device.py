"""bench.device: naming the device and knowing its peak."""

from __future__ import annotations

import torch

from bench.device import PEAK_BF16_FLOPS, cpu_model, device_label, peak_flops

CPU = torch.device("cpu")


def test_cpu_label_names_the_model_and_the_threads_measured_on() -> None:
    label = device_label(CPU)
    assert label == f"{cpu_model()}, {torch.get_num_threads()} threads" and cpu_model()


def test_peaks_are_known_for_datacentre_gpus_only() -> None:
    assert peak_flops(CPU) is None
    assert PEAK_BF16_FLOPS["H100"] == PEAK_BF16_FLOPS["H200"] == 989e12
    # "H100 PCIe" must be matched before "H100": the first key found in the name wins.
    keys = list(PEAK_BF16_FLOPS)
    assert keys.index("H100 PCIe") < keys.index("H100")
