"""Argument checks shared by the public API: each raises before any work starts.

Every message names the argument, what was received and what is accepted, so the user can fix the
call without reading our source.
"""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import Tensor


def positive_finite(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number > 0, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def integer_at_least(name: str, value: object, low: int) -> int:
    """Return ``value`` if it is an int >= ``low``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")
    return value


def one_of(name: str, value: object, accepted: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``accepted``, else raise listing them."""
    if value not in accepted:
        choices = ", ".join(repr(a) for a in accepted)
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value  # type: ignore[return-value]


def budget_tensor(name: str, value: float | Tensor, x: Tensor) -> Tensor:
    """A budget (scalar or per-example ``[b]``) as a tensor on ``x``'s device and dtype.

    Raises if any entry is not finite or not > 0, or if a tensor budget is neither 0-d nor ``[b]``.
    """
    if isinstance(value, Tensor):
        if value.dim() not in (0, 1) or (value.dim() == 1 and value.shape[0] != x.shape[0]):
            raise ValueError(
                f"{name} must be a number, a 0-d tensor or a tensor of shape [batch]="
                f"[{x.shape[0]}], got shape {list(value.shape)}"
            )
        if not value.is_floating_point():
            value = value.to(x.dtype)
        if not bool(torch.isfinite(value).all()) or bool((value <= 0).any()):
            raise ValueError(f"{name} must be finite and > 0 for every example, got {value}")
        return value.to(device=x.device, dtype=x.dtype)
    return torch.tensor(positive_finite(name, value), device=x.device, dtype=x.dtype)


def inputs(x: object, y: object) -> None:
    """Check a batch: ``x`` floating point, finite, in [0, 1]; ``y`` integer labels ``[b]``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of inputs in [0, 1], got {type(x).__name__}")
    if not isinstance(y, Tensor):
        raise TypeError(f"y must be a torch.Tensor of integer labels, got {type(y).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be floating point with values in [0, 1], got dtype {x.dtype}; "
            "convert with x.float() / 255 for 8-bit images"
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch [b, ...], got shape {list(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values; inputs must be finite, in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"x must lie in [0, 1] (got min {lo:.4g}, max {hi:.4g}); "
            "move any normalisation inside the model"
        )
    if y.dtype in (torch.bool,) or y.is_floating_point() or y.is_complex():
        raise TypeError(f"y must hold integer class labels (torch.long), got dtype {y.dtype}")
    if y.dim() != 1:
        raise ValueError(f"y must be a 1-d tensor of labels [b], got shape {list(y.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size, got x {x.shape[0]} and y {y.shape[0]}"
        )


def logits(out: object, y: Tensor) -> None:
    """Check a model's output on a batch: logits ``[b, classes]`` and labels within the classes."""
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the model must return a tensor of logits [b, classes], got {type(out).__name__}"
        )
    if out.dim() != 2 or out.shape[0] != y.shape[0]:
        raise ValueError(
            f"the model must return logits of shape [b, classes] = [{y.shape[0]}, C], "
            f"got shape {list(out.shape)}"
        )
    classes = out.shape[1]
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= classes:
        raise ValueError(
            f"y must hold labels in [0, {classes - 1}] for a model with {classes} classes, "
            f"got labels in [{lo}, {hi}]"
        )
