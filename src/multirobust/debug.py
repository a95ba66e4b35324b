"""Debug mode: every perturbation an attack makes is checked against its own player's set.

A new player whose ``project`` leaks (a missing clip, a wrong norm, a budget of the wrong shape)
does not crash anything: it silently trains and evaluates against a stronger threat than it
claims. Inside ``check_feasibility()`` (or with the environment variable ``MULTIROBUST_DEBUG=1``)
every attack step of ``pgd``, the aggregators, the trainer and ``evaluate``, and every random
start, checks that ``player.size(delta) <= eps`` per example (up to ``rtol``/``atol``) and that
the adversarial input ``player.apply(x, delta)`` lies in [0, 1] and both are finite, and raises
``InfeasiblePerturbation`` naming the player, the step, and its ``project`` (after a step;
``ascend`` too for a NaN or infinite step) or ``init`` (after a random start), otherwise. A NaN
compares false with every bound, so non-finite values are refused by a check of their own. Each
check synchronises with the device: a debugging aid, off by default.
"""

import contextlib
import dataclasses
import os
from collections.abc import Iterator

import torch
from torch import Tensor

from multirobust.players import Budget, Player


class InfeasiblePerturbation(RuntimeError):
    """A player returned a perturbation outside its own ball or the [0, 1] box."""


@dataclasses.dataclass(frozen=True)
class _Tolerance:
    rtol: float
    atol: float


_active: list[_Tolerance] = []


def _from_environment() -> _Tolerance | None:
    return _Tolerance(1e-4, 1e-6) if os.environ.get("MULTIROBUST_DEBUG") == "1" else None


@contextlib.contextmanager
def check_feasibility(rtol: float = 1e-4, atol: float = 1e-6) -> Iterator[None]:
    """Check every attack step against the player's ball and the box while inside.

    Args:
        rtol: relative slack on the budget (float rounding of a projection).
        atol: absolute slack on the budget and on the box.

    Examples:
        >>> import torch, multirobust as mr
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> with mr.check_feasibility():
        ...     x_adv = mr.pgd(mr.linf(eps=0.1, alpha=0.05), steps=3)(model, x, y, seed=0)
    """
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    _active.append(_Tolerance(float(rtol), float(atol)))
    try:
        yield
    finally:
        _active.pop()


def enabled() -> bool:
    """Whether attack steps are being checked (inside ``check_feasibility`` or by the env var)."""
    return bool(_active) or _from_environment() is not None


def check_step(
    player: Player, x: Tensor, delta: Tensor, eps: Budget, where: str, made_by: str = "project"
) -> None:
    """Raise ``InfeasiblePerturbation`` if ``delta`` is not finite or leaves ``player``'s ball or
    the box.

    Does nothing outside debug mode. ``where`` says which step of which attack made ``delta``,
    ``made_by`` which of the player's methods the message points at (``"init"`` for starts).
    """
    tol = _active[-1] if _active else _from_environment()
    if tol is None:
        return
    with torch.no_grad():
        size = player.size(delta).float()
        budget = torch.as_tensor(eps, device=size.device, dtype=torch.float32).expand_as(size)
        over = size > budget * (1 + tol.rtol) + tol.atol
        adv = player.apply(x, delta).float()
        outside = ((adv < -tol.atol) | (adv > 1 + tol.atol)).flatten(1).any(dim=1)
        # NaN compares False with everything: without this, a NaN step passes both checks
        bad = ~torch.isfinite(size) | ~torch.isfinite(adv).flatten(1).all(dim=1)
        if delta.is_floating_point() and delta.dim() > 0 and delta.shape[0] == size.numel():
            bad = bad | ~torch.isfinite(delta).flatten(1).all(dim=1)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            culprit = "ascend() and project()" if made_by == "project" else f"{made_by}()"
            raise InfeasiblePerturbation(
                f"player {player.name!r} returned a non-finite perturbation (NaN or inf) at "
                f"{where}: example {i} ({int(bad.sum())} of {size.numel()} examples non-finite, "
                f"in the perturbation or the input apply() makes of it); check its {culprit}"
            )
        if bool(over.any()):
            i = int((size - budget).argmax())
            raise InfeasiblePerturbation(
                f"player {player.name!r} returned a perturbation outside its own ball at {where}: "
                f"example {i} has size {float(size[i]):.6g} > eps {float(budget[i]):.6g} "
                f"({int(over.sum())} of {size.numel()} examples over); check its {made_by}()"
            )
        if bool(outside.any()):
            i = int(outside.nonzero()[0])
            lo, hi = float(adv[i].min()), float(adv[i].max())
            raise InfeasiblePerturbation(
                f"player {player.name!r} made an input outside [0, 1] at {where}: example {i} "
                f"spans [{lo:.6g}, {hi:.6g}] ({int(outside.sum())} of {size.numel()} examples "
                f"outside); check its {made_by}() and apply()"
            )
