"""Signs that an evaluation overestimates robustness: ``RobustnessWarning`` and the checks.

In the spirit of AutoAttack's ``checks.py``: before any attack the model is checked for softmax
outputs, randomness and zero input gradients. PGD suites then check, per threat, that a single
step of size eps does not break what the full attack missed, and, on a seeded sample of at most
``SAMPLE`` examples, that the input gradients point uphill (the descent check) and that PGD on
the scale-invariant DLR loss of Croce & Hein (2020) breaks nothing the cross-entropy PGD left
standing (the cross-check). What the cross-check breaks counts as broken in the report: an
example broken by any attack is not robust (see ``docs/evaluation.md``).

Examples:
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.Softmax(1))
    >>> found = _model_checks(model, torch.rand(4, 1, 2, 2), torch.zeros(4).long())
    >>> "probabilities" in found[0]
    True
"""

import dataclasses
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multirobust.players import Player
from multirobust.players import flat as _flat

ZERO_GRADIENT_SHARE = 0.01
"""Warn when at least this share of a batch has an all-zero input gradient."""

OVERLOOKED_SHARE = 0.01
"""Warn when a weaker attack breaks more than this share of the examples a stronger one missed."""

SAMPLE = 64
"""The most examples per threat the descent check and the DLR cross-check attack."""

DESCENT_SHARE = 0.5
"""Warn when a small ascent step lowers the loss for at least this share of the sampled examples
whose loss it changed (a true gradient raises it for almost all of them)."""

DESCENT_STEP = 0.1
"""The descent check's step, as a fraction of the threat's step size ``alpha``."""


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


def dlr_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Croce & Hein's (2020) DLR loss per example, positive once ``logits`` misclassify ``y``.

    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)`` (``pi``: the classes sorted by
    logit): unchanged when the logits are scaled, so a saturated softmax cannot hide its
    gradient. With fewer than 3 classes, the plain margin ``max_{j != y} z_j - z_y``.

    Examples:
        >>> z = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
        >>> dlr_loss(z, torch.tensor([0])), dlr_loss(150 * z, torch.tensor([0]))
        (tensor([-0.6667]), tensor([-0.6667]))
    """
    z = logits.float()
    mine = z.gather(1, y[:, None])[:, 0]
    other = z.scatter(1, y[:, None], -torch.inf).amax(dim=1)
    margin = other - mine
    if z.shape[1] < 3:
        return margin
    top = z.topk(3, dim=1).values
    return margin / (top[:, 0] - top[:, 2] + 1e-12)


def _dlr_gradient(
    model: nn.Module, player: Player, x: Tensor, y: Tensor, delta: Tensor, sign: float
) -> tuple[Tensor, Tensor, Tensor]:
    """``(gradient, loss, logits)`` of ``sign * dlr_loss`` at ``delta``; a zero gradient where
    the loss does not depend on ``delta``."""
    with torch.enable_grad():
        d = delta.detach().requires_grad_(True)
        logits = model(player.apply(x, d))
        loss = sign * dlr_loss(logits, y)
        g = None
        if loss.requires_grad:
            (g,) = torch.autograd.grad(loss.sum(), d, allow_unused=True)
    return (torch.zeros_like(d) if g is None else g), loss.detach(), logits.detach()


def dlr_pgd_broken(
    model: nn.Module,
    player: Player,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    generator: torch.Generator,
    sign: float = 1.0,
    start: Tensor | None = None,
) -> Tensor:
    """Whether PGD on the DLR loss misclassifies each example at some iterate, ``[b]``.

    One run from ``start`` (the player's zero if ``None``), with the player's own ``ascend`` and
    ``project``: the evaluation's attack with the cross-entropy replaced by ``dlr_loss``.
    ``sign=-1`` climbs against the input gradient, for a model whose gradient points downhill.
    """
    delta = player.zero(x) if start is None else start
    broken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for t in range(steps + 1):
        if t == steps:
            with torch.no_grad():
                broken |= model(player.apply(x, delta)).argmax(dim=1) != y
            break
        g, _, logits = _dlr_gradient(model, player, x, y, delta, sign)
        broken |= logits.argmax(dim=1) != y
        if bool(broken.all()):
            break
        with torch.no_grad():
            step = player.ascend(x, delta, g, alpha, player.draw(x, generator))
            delta = player.project(x, step, eps)
    return broken


@dataclasses.dataclass
class Crosscheck:
    """What the descent check and the DLR cross-check of one threat found, over its sample.

    Attributes:
        label: the threat, as warnings name it.
        steps: the PGD iterations of the threat (and of the cross-check).
        restarts: the evaluation's restarts.
        sampled: sampled examples classified correctly without attack.
        standing: of those, the ones the cross-entropy PGD left correct.
        broken: of those, the ones the DLR cross-check broke (counted as broken).
        moved: sampled examples whose loss a small ascent step changed.
        downhill: of those, the ones whose loss it lowered.
        stalled: sampled examples whose ascent step moved less than a thousandth of its size
            although their gradient is not zero (a gradient too small for the step).
        against: whether the cross-check also climbed against the gradient (the descent check
            fired on a batch).
    """

    label: str
    steps: int
    restarts: int
    sampled: int = 0
    standing: int = 0
    broken: int = 0
    moved: int = 0
    downhill: int = 0
    stalled: int = 0
    against: bool = False

    def run(
        self,
        model: nn.Module,
        player: Player,
        x: Tensor,
        y: Tensor,
        standing: Tensor,
        *,
        eps: float,
        alpha: float,
        generator: torch.Generator,
    ) -> Tensor:
        """Check the sampled, clean-correct examples ``x``; returns which of the ``standing``
        ones (those the main attack left correct) the cross-check broke, ``[b]``."""
        self.sampled += int(x.shape[0])
        zero, h = player.zero(x), DESCENT_STEP * alpha
        g, loss, _ = _dlr_gradient(model, player, x, y, zero, 1.0)
        with torch.no_grad():
            step = player.project(x, player.ascend(x, zero, g, h, player.draw(x, generator)), eps)
            after = dlr_loss(model(player.apply(x, step)), y)
        still = player.size(step - zero) <= 1e-3 * h  # moved less than a thousandth of the step
        moved = (after != loss) & ~still
        down = moved & (after < loss)
        self.moved += int(moved.sum())
        self.downhill += int(down.sum())
        self.stalled += int((still & (_flat(g).abs().sum(dim=1) > 0)).sum())
        against = _fires(int(down.sum()), int(moved.sum()), DESCENT_SHARE)
        self.against |= against
        broken = torch.zeros_like(standing)
        idx = standing.nonzero().flatten()
        self.standing += int(idx.numel())
        if idx.numel():
            kw = {"eps": eps, "alpha": alpha, "steps": self.steps, "generator": generator}
            xs, ys = x[idx], y[idx]
            hit = torch.zeros_like(idx, dtype=torch.bool)
            for sign in (1.0, -1.0) if against else (1.0,):
                # From zero, then from one random start: the main attack's first two runs.
                for start in (None, "random"):
                    left = (~hit).nonzero().flatten()
                    if left.numel() == 0:
                        break
                    init = None
                    if start is not None:
                        init = player.init(xs[left], eps, generator)
                    hit[left] = dlr_pgd_broken(
                        model, player, xs[left], ys[left], sign=sign, start=init, **kw
                    )
            broken[idx] = hit
        self.broken += int(broken.sum())
        return broken

    def counts(self) -> dict[str, int | bool]:
        """The counts, JSON-able, for a report's settings."""
        names = ("sampled", "standing", "broken", "moved", "downhill", "stalled", "against")
        return {k: getattr(self, k) for k in names}

    def messages(self) -> list[str]:
        """The warnings these counts call for."""
        fix = "use suite='autoattack' / a stronger attack, and check the model for gradient masking"
        found = []
        if _fires(self.downhill, self.moved, DESCENT_SHARE):
            found.append(
                f"{self.label}: for {self.downhill} of {self.moved} sampled examples a small step "
                "along the attack's ascent direction lowered the loss: the input gradients look "
                "reversed or obfuscated, so gradient attacks climb the wrong way; the DLR "
                "cross-check also climbed against the gradient; " + fix
            )
        if self.stalled and self.stalled >= max(2, ZERO_GRADIENT_SHARE * self.sampled):
            found.append(
                f"{self.label}: for {self.stalled} of {self.sampled} sampled examples the "
                "attack's step did not move although the input gradient is not zero (a gradient "
                "too small for the step, e.g. scaled down in the backward pass): PGD cannot move "
                "from there; " + fix
            )
        if self.broken and self.broken >= max(2, OVERLOOKED_SHARE * self.sampled):
            found.append(
                f"{self.label}: PGD on the scale-invariant DLR loss broke {self.broken} of the "
                f"{self.sampled} sampled examples ({self.broken / self.sampled:.1%}) that "
                f"{self.steps}-step cross-entropy PGD with {self.restarts} restarts left correct "
                "(signs of gradient masking, e.g. saturated logits); they are counted as broken "
                "(an example broken by any attack is not robust), but the examples outside the "
                f"sample were not cross-checked, so robust accuracy is likely overestimated; " + fix
            )
        return found


def _fires(count: int, total: int, share: float) -> bool:
    return count >= 2 and count >= share * total


def _warn(messages: list[str]) -> tuple[str, ...]:
    for m in messages:
        warnings.warn(m, RobustnessWarning, stacklevel=3)
    return tuple(messages)


__all__ = [
    "DESCENT_SHARE",
    "DESCENT_STEP",
    "OVERLOOKED_SHARE",
    "SAMPLE",
    "ZERO_GRADIENT_SHARE",
    "Crosscheck",
    "RobustnessWarning",
    "dlr_loss",
    "dlr_pgd_broken",
]
