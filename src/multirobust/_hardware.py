"""What the CPU can do fast: its vector capability, and whether it computes bf16 natively."""

import warnings

import torch

AMP_ON_EMULATED_BF16 = (
    "amp=True on a CPU without native bf16 ({capability}): bf16 runs emulated, and a training "
    "step measured 5-9x slower than float32 (9-13x slower than compile=True alone; digits CNN, "
    "benchmarks/step_time.py on AVX2). Pass amp=False (with compile=True for the compiled fp32 "
    "path) on this CPU"
)


def cpu_capability() -> str:
    """The vector instructions torch's CPU kernels use: ``"AVX2"``, ``"AVX512"``, ...

    Examples:
        >>> isinstance(cpu_capability(), str)
        True
    """
    return str(torch.backends.cpu.get_cpu_capability())


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 bf16 or AMX), as oneDNN reports."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def warn_if_emulated_bf16(device: torch.device, stacklevel: int = 3) -> None:
    """Warn that bf16 autocast on ``device`` is slow, when it is a CPU without native bf16."""
    if torch.device(device).type == "cpu" and not native_bf16():
        warnings.warn(
            AMP_ON_EMULATED_BF16.format(capability=cpu_capability()),
            RuntimeWarning,
            stacklevel=stacklevel,
        )
