"""Device resolution, names and per-device defaults (study.device)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from study.device import (
    autocast,
    autocast_dtype,
    cpu_has_bf16,
    default_batch_size,
    device_name,
    resolve_device,
    versions,
)
from study.errors import UsageError


@pytest.mark.slow
def test_importing_the_module_does_not_import_torch() -> None:
    """The study runner checks a device through this module before any worker starts."""
    code = "import sys, study.device; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None and not torch.backends.mps.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UsageError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_absent_cuda_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cuda"):
        resolve_device("cuda")


def test_defaults_and_names() -> None:
    cpu = torch.device("cpu")
    assert default_batch_size(cpu) == 32
    assert default_batch_size(torch.device("cuda")) == 256  # no device needed to ask
    name = device_name(cpu)
    assert name.startswith("cpu ") and "thread" not in name
    assert ("bf16" in name) == cpu_has_bf16()


def test_a_cpu_is_named_by_its_model_and_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two CPUs of one architecture that train at different speeds get different names."""
    import study.device as device

    monkeypatch.setattr(device.platform, "machine", lambda: "x86_64")
    names = []
    for model, bf16 in (("AMD EPYC", True), ("AMD EPYC", False), ("", False), ("x86_64", True)):
        monkeypatch.setattr(device, "cpu_model", lambda model=model: model)
        monkeypatch.setattr(device, "cpu_has_bf16", lambda bf16=bf16: bf16)
        names.append(device_name(torch.device("cpu")))
    assert names == [
        "cpu x86_64 (AMD EPYC, bf16)",
        "cpu x86_64 (AMD EPYC)",
        "cpu x86_64",
        "cpu x86_64 (bf16)",
    ]
    assert set(versions()) == {"python", "torch", "numpy", "tokenizers", "study"}
    assert versions()["torch"] == torch.__version__


def test_autocast_dtype_per_precision() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", cuda) is torch.float16
    assert autocast_dtype("auto", cuda) is torch.bfloat16
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if cpu_has_bf16() else None)
    assert autocast_dtype("auto", torch.device("mps")) is None


def test_autocast_factory() -> None:
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(torch.device("cpu"), torch.bfloat16)():
        assert (a @ b).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), None)():
        assert (a @ b).dtype == torch.float32
