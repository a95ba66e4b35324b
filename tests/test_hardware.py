"""bf16 only where the CPU has it; the GPU fast path only where there is a GPU
(``multirobust._hardware``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import multirobust as mr
from multirobust import _hardware

ROOT = Path(__file__).resolve().parents[1]


def trainer(amp: bool) -> mr.Trainer:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return mr.Trainer(model, opt, mr.max_(mr.linf(eps=0.1, steps=1)), amp=amp)


def test_amp_on_a_cpu_without_native_bf16_warns_with_the_cost_and_the_fix(monkeypatch) -> None:
    """Before: a 5-9x slower step and no word."""
    monkeypatch.setattr(_hardware, "native_bf16", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"emulated, and a training step measured 5-9x slower"):
        trainer(amp=True)


def test_no_warning_with_native_bf16_or_without_amp(monkeypatch, recwarn) -> None:
    monkeypatch.setattr(_hardware, "native_bf16", lambda: True)
    trainer(amp=True)
    monkeypatch.setattr(_hardware, "native_bf16", lambda: False)
    trainer(amp=False)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_an_avx2_limited_cpu_reports_no_native_bf16() -> None:
    """The emulation the benchmarks use (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA) is seen."""
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    code = "from multirobust import _hardware as h; print(h.cpu_capability(), h.native_bf16())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["AVX2", "False"], out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("flag", [["--fast"], ["--device", "cuda"]], ids=["fast", "device"])
def test_the_gpu_fast_path_is_refused_without_a_gpu(flag, tmp_path) -> None:
    """Before: --fast without CUDA compiled on the CPU for over 5 minutes of a 77 s smoke run."""
    cmd = [sys.executable, "recipes/mnist.py", "--smoke", "--fake-data", "--out", str(tmp_path)]
    out = subprocess.run([*cmd, *flag], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "needs a CUDA GPU and this machine has none" in out.stderr
    assert not (tmp_path / "config.json").exists()
