"""Speed never costs strength: the fast path's attacks (bf16 autocast, compiled iterations, CUDA
graphs) leave a digits model within 1 point of the robust accuracy under fp32 eager attacks.

The attacks are the trainer's own (``Aggregator.perturb``), run on all 1797 of scikit-learn's
digits against a clean-trained CNN, where robust accuracy sits mid-range and moves with attack
strength. The CPU row with bf16 runs in the default test run; compiling on the CPU takes a minute
(slow); the CUDA rows run where a GPU is.
"""

import contextlib

import pytest
import torch
import torch.nn.functional as F

import multirobust as mr
from multirobust.data import digits
from multirobust.models import DigitsCNN

PLAYERS = (
    mr.linf(eps=0.1, alpha=0.025, steps=10),
    mr.l2(eps=0.5, alpha=0.15, steps=10),
    mr.l1(eps=1.0, alpha=0.25, steps=10, k_min=2, k_max=8),
)


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    train, test = digits(seed=0)
    x = torch.cat([train.tensors[0], test.tensors[0]])
    y = torch.cat([train.tensors[1], test.tensors[1]])
    torch.manual_seed(0)
    model = DigitsCNN(width=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval(), x, y


def robust_accuracy(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    amp: bool,
    compile: bool | str,
    channels_last: bool = False,
) -> dict[str, float]:
    """Per player, accuracy (fp32 forward) on the trainer's adversarial batch for that player."""
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (
        torch.autocast(device_type=x.device.type, dtype=torch.bfloat16)
        if amp
        else contextlib.nullcontext()
    )
    out = {}
    for p in PLAYERS:
        g = torch.Generator(device=x.device).manual_seed(0)
        with autocast:
            adv = mr.max_(p).perturb(model, x, y, generator=g, compiled=compile).x
        assert bool((p.size(adv - x) <= p.eps * (1 + 1e-3) + 1e-5).all())
        with torch.no_grad():
            out[p.name] = (model(adv).argmax(1) == y).float().mean().item()
    return out


def check_within_one_point(trained, device: str, **fast) -> None:
    model, x, y = trained
    model, x, y = model.to(device), x.to(device), y.to(device)
    reference = robust_accuracy(model, x, y, amp=False, compile=False)
    assert 0.1 < min(reference.values()) and max(reference.values()) < 0.9, reference
    got = robust_accuracy(model, x, y, **fast)
    for name, acc in reference.items():
        assert abs(got[name] - acc) <= 0.01, (name, got[name], acc)


def test_bf16_attacks_within_one_point_on_cpu(trained) -> None:
    check_within_one_point(trained, "cpu", amp=True, compile=False)


@pytest.mark.slow
@pytest.mark.usefixtures("untyped")
def test_bf16_compiled_attacks_within_one_point_on_cpu(trained) -> None:
    """The CPU fast path: bf16, channels-last, compiled (step_time.py's ``amp+compile``)."""
    check_within_one_point(trained, "cpu", amp=True, compile=True, channels_last=True)


@pytest.mark.gpu
@pytest.mark.usefixtures("untyped")
@pytest.mark.parametrize("compile", [False, True, "reduce-overhead"])
def test_bf16_attacks_within_one_point_on_cuda(trained, compile) -> None:
    check_within_one_point(trained, "cuda", amp=True, compile=compile, channels_last=True)
