"""Argument checks shared by the public API: each raises before any work starts.

Every message names the argument, what was received and what is accepted, so the user can fix the
call without reading our source.
"""

from __future__ import annotations

import itertools
import math
from numbers import Real
from typing import Any

import torch
from torch import Tensor, nn


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


def seed(name: str, value: object, allow_none: bool = True) -> int | None:
    """Return ``value`` if it is an int torch can seed with (or ``None`` when allowed), else
    raise naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        accepted = "an int or None" if allow_none else "an int"
        raise TypeError(
            f"{name} must be {accepted}, got {type(value).__name__} {value!r}; pass e.g. {name}=0"
        )
    if not -(2**63) <= value < 2**64:
        raise ValueError(
            f"{name} must be in [-2**63, 2**64) (a 64-bit seed), got {value}; pass e.g. {name}=0"
        )
    return value


def generator(value: object, x: Tensor) -> torch.Generator | None:
    """Return ``value`` if it is ``None`` or a ``torch.Generator`` on ``x``'s device type."""
    if value is None:
        return None
    if not isinstance(value, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(value).__name__}; "
            "pass torch.Generator(device=x.device).manual_seed(0), or seed=0 instead"
        )
    if value.device.type != x.device.type:
        raise ValueError(
            f"generator is on {value.device} but x is on {x.device}; pass "
            f"torch.Generator(device={str(x.device)!r}), or seed=... instead"
        )
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
    if y.device != x.device:
        raise ValueError(
            f"y is on {y.device} but x is on {x.device}; move both to the model's device, "
            "e.g. x.to(device), y.to(device)"
        )
    x = x.detach()
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
    if y.dtype != torch.long:  # one rule everywhere: apgd and autoattack take int64 only
        fix = "" if y.is_floating_point() or y.dtype == torch.bool else "; convert with y.long()"
        raise TypeError(f"y must hold integer class labels (torch.long), got dtype {y.dtype}{fix}")
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


def _model_tensors(model: nn.Module) -> list[Tensor]:
    return list(itertools.chain(model.parameters(), model.buffers()))


def forward(model: nn.Module, x: Tensor) -> Any:
    """``model(x)``; if the model fails on ``x``, a ValueError naming x's shape, dtype and device.

    A model that cannot take ``x`` (wrong rank or size, another dtype or device than its
    parameters) otherwise fails deep inside torch with a message that names neither ``x`` nor
    the fix.
    """
    try:
        return model(x)
    except torch.OutOfMemoryError:
        raise  # not a property of x: callers (batch-size searches) catch it as such
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        tensors = _model_tensors(model)
        devices = list(dict.fromkeys(str(t.device) for t in tensors))
        dtypes = list(dict.fromkeys(str(t.dtype) for t in tensors if t.is_floating_point()))
        if devices and str(x.device) not in devices:
            hint = f"the model is on {devices[0]}: move x and y there with .to({devices[0]!r})"
        elif dtypes and str(x.dtype) not in dtypes:
            hint = f"the model's parameters are {dtypes[0]}: convert x with .to({dtypes[0]})"
        else:
            hint = "pass x of the shape the model expects (its input size and channels)"
        detail = str(e).splitlines()[0] if str(e) else "no detail"
        raise ValueError(
            f"x (shape {list(x.shape)}, dtype {x.dtype}, on {x.device}) does not fit the model, "
            f"which raised {type(e).__name__}: {detail}; {hint}"
        ) from e
