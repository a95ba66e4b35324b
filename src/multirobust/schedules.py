"""Learning-rate schedules stepped once per batch."""

import itertools
import math

import torch

from multirobust import _checks


def piecewise_linear(
    optimizer: torch.optim.Optimizer,
    epochs: list[float],
    values: list[float],
    steps_per_epoch: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-batch learning rate interpolated linearly between ``(epoch, value)`` knots.

    The paper's CIFAR-10 schedule is ``epochs=[0, 20, 40, 50]``, ``values=[0, 0.1, 0.005, 0]``.
    The optimiser's own ``lr`` is ignored (the scheduler sets it).

    Examples:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = piecewise_linear(opt, [0, 1, 2], [0.0, 1.0, 0.0], steps_per_epoch=2)
        >>> lrs = []
        >>> for _ in range(4):
        ...     opt.step()
        ...     sched.step()
        ...     lrs.append(round(opt.param_groups[0]["lr"], 2))
        >>> lrs
        [0.5, 1.0, 0.5, 0.0]
    """
    if len(epochs) != len(values) or len(epochs) < 2:
        raise ValueError("epochs and values must be lists of the same length >= 2")
    if any(b <= a for a, b in itertools.pairwise(epochs)):
        raise ValueError(f"epochs must increase strictly, got {epochs}")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"values must be finite and >= 0, got {values}")
    _checks.integer_at_least("steps_per_epoch", steps_per_epoch, 1)
    for group in optimizer.param_groups:
        group["lr"] = 1.0
        group["initial_lr"] = 1.0

    def lr_at(step: int) -> float:
        t = step / steps_per_epoch
        if t >= epochs[-1]:
            return values[-1]
        for (e0, v0), (e1, v1) in zip(
            zip(epochs, values, strict=True),
            zip(epochs[1:], values[1:], strict=True),
            strict=True,
        ):
            if e0 <= t <= e1:
                return v0 + (v1 - v0) * (t - e0) / (e1 - e0)
        return values[0]

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
