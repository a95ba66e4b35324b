"""Signs that an evaluation overestimates robustness: ``RobustnessWarning`` and the checks.

In the spirit of AutoAttack's ``checks.py``: before any attack the model is checked for softmax
outputs, randomness and zero input gradients; PGD suites then check that a single step of size
eps does not break what the full attack missed (see ``docs/evaluation.md``).

Examples:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Softmax(1))
    >>> found = _model_checks(model, torch.rand(4, 1, 2, 2), torch.zeros(4).long())
    >>> "probabilities" in found[0]
    True
"""

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multirobust.players import flat as _flat

ZERO_GRADIENT_SHARE = 0.01
"""Warn when at least this share of a batch has an all-zero input gradient."""

OVERLOOKED_SHARE = 0.01
"""Warn when a weaker attack breaks more than this share of the examples a stronger one missed."""


class RobustnessWarning(UserWarning):
    """A sign that an evaluation overestimates robustness (gradient masking, a weak attack)."""


def _model_checks(model: nn.Module, x: Tensor, y: Tensor) -> list[str]:
    """AutoAttack-style checks (checks.py) on one batch: softmax, randomness, zero gradients."""
    found = []
    with torch.no_grad():
        a, b = model(x).float(), model(x).float()
    if bool((a >= -1e-5).all() and (a <= 1 + 1e-5).all()) and bool(
        ((a.sum(dim=1) - 1).abs() < 1e-4).all()
    ):
        found.append(
            "the model's outputs are probabilities (each row sums to 1): attacks need logits, and "
            "a softmax output saturates their gradients; remove the final softmax"
        )
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        diff = float((a - b).abs().max())
        found.append(
            f"the model is not deterministic in eval mode (two forward passes differ by up to "
            f"{diff:.3g}): a randomised defence needs attacks with expectation over "
            "transformation, and these accuracies are likely overestimated"
        )
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr).float(), y, reduction="sum")
        if loss.requires_grad:
            (g,) = torch.autograd.grad(loss, xr, allow_unused=True)
        else:
            g = None
    zero = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    if g is not None:
        zero = _flat(g).abs().sum(dim=1) == 0
    count = int(zero.sum())
    if count and count >= ZERO_GRADIENT_SHARE * x.shape[0]:
        found.append(
            f"the input gradient of the loss is exactly zero for {count} of {x.shape[0]} examples "
            "at the clean input (a non-differentiable model, e.g. rounding or argmax, or a "
            "saturated softmax): gradient attacks cannot move from there and robust accuracy "
            "may be overestimated"
        )
    return found


def _warn(messages: list[str]) -> tuple[str, ...]:
    for m in messages:
        warnings.warn(m, RobustnessWarning, stacklevel=3)
    return tuple(messages)


__all__ = ["OVERLOOKED_SHARE", "ZERO_GRADIENT_SHARE", "RobustnessWarning"]
