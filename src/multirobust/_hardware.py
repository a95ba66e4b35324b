"""What the CPU can do fast: its vector capability, and whether it computes bf16 natively."""

import warnings

import torch

AMP_ON_EMULATED_BF16 = (
    "bf16 autocast (amp=True) on this CPU ({capability}, no native bf16) is emulated: a training "
    "step measured 3.6-8x slower than fp32 on an AVX2-only CPU (benchmarks/step_time.py, digits "
    "CNN, MSD / MAX / AVG). Pass amp=False (with compile=True for the compiled fp32 path)"
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
