"""APGD's schedule and steps: the checkpoints, the generic step over the ``Player`` protocol, and
APGD-L1's sparse step with the optional protocol ``SparseStepPlayer`` a player declares it by.

Examples:
    >>> checkpoints(100)
    (22, 41, 57, 70, 80, 87, 93, 99)
"""

import inspect
import math
from typing import Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from multirobust.players import L1, Budget, Player, flat, per_example
from multirobust.projections import project_l1_ball_box

STEPS = ("auto", "generic", "sparse")
"""``apgd``'s ``step``: ``"auto"`` (APGD-L1's sparse step for l_1 players, the generic step for
every other player), ``"generic"`` or ``"sparse"`` (an error for a player without one)."""

# APGD-L1 (Croce & Hein, ICML 2021): the first step moves 20% of the coordinates, later steps
# nnz / 1.5 of the best point's support (see ``sparsity``); checkpoints every 4% of the
# iterations; the step size shrinks by 1.5 per checkpoint, to eps / 10 at least, and is reset to
# eps (with a restart from the best point) when the best point's support shrank by 5% or more.
SPARSE_SHARE = 0.2
SPARSE_SHRINK = 1.5
SPARSE_EVERY = 0.04
SPARSE_STEP_SHRINK = 1.5
SPARSE_MIN_STEP = 0.1
SPARSE_SUPPORT_DROP = 0.95
SUPPORT_TOL = 1e-6


def checkpoints(steps: int) -> tuple[int, ...]:
    """The iterations after which APGD may halve its step size (Croce & Hein 2020, Sec. 3.2).

    ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``; only those before the last iteration
    (a decision after it changes nothing), without repeats.

    Examples:
        >>> checkpoints(10)
        (3, 5, 6, 7, 8, 9)
    """
    p = [0.0, 0.22]
    while True:
        following = p[-1] + max(p[-1] - p[-2] - 0.03, 0.06)
        if following > 1:
            break
        p.append(following)
    # p_j * steps is an integer in exact arithmetic for some j; float rounding must not push it up
    w = {math.ceil(q * steps - 1e-9) for q in p[1:]}
    return tuple(sorted(i for i in w if 1 <= i < steps))


def sparse_checkpoints(steps: int) -> tuple[int, ...]:
    """APGD-L1's checkpoints: every 4% of the iterations (every iteration below 50).

    Examples:
        >>> sparse_checkpoints(100)[:3]
        (4, 8, 12)
    """
    every = max(math.floor(SPARSE_EVERY * steps), 1)
    return tuple(range(every, steps, every))


def generic_step(
    player: Player,
    x: Tensor,
    delta: Tensor,
    previous: Tensor,
    grad: Tensor,
    step_size: Float[Tensor, " b"],
    eps: Budget,
    momentum: Float[Tensor, ""],
    noise: Tensor | None,
) -> Tensor:
    """APGD's step through the player: ``z = project(ascend(delta, grad, eta))``, then
    ``project(delta + a (z - delta) + (1 - a) (delta - previous))`` with momentum ``a``."""
    z = player.project(x, player.ascend(x, delta, grad, step_size, noise), eps)
    a = momentum.to(delta.dtype)
    return player.project(x, delta + a * (z - delta) + (1 - a) * (delta - previous), eps)


@runtime_checkable
class SparseStepPlayer(Protocol):
    """The optional member a player implements to take APGD-L1's sparse step in ``apgd``.

    The built-in l_1 players (``mr.l1``, ``mr.l1_eval``) take it without implementing it: ``apgd``
    moves them with ``sparse_direction`` and projects exactly onto the l_1 ball ∩ box. With it,
    ``apgd`` runs APGD-L1's schedule (the sparsity ``k`` from the best point's support, no
    momentum, a step size starting at ``eps``) and leaves the step to the player.

    Examples:
        >>> import multirobust as mr
        >>> isinstance(mr.linf, SparseStepPlayer)
        False
    """

    def sparse_step(
        self,
        x: Tensor,
        delta: Tensor,
        grad: Tensor,
        step_size: Float[Tensor, " b"],
        k: Int[Tensor, " b"],
        eps: Float[Tensor, " b"],
    ) -> Tensor:
        """``delta`` moved by ``step_size`` along the steepest ascent direction over ``k``
        coordinates per example, then projected back into the player's set of budget ``eps``."""
        ...


def sparse_direction(grad: Float[Tensor, " b *s"], k: Int[Tensor, " b"]) -> Float[Tensor, " b *s"]:
    """The unit-l_1 direction spreading equal mass over the ``k`` largest ``|grad_i|``.

    Coordinates at the box's edge are not left out: the projection onto the l_1 ball ∩ box clips
    what they receive, which leaves more of the budget on the others (on a linear model this
    fills the largest coordinates to the box, as the optimum does; leaving them out spreads the
    budget over smaller ones).

    Examples:
        >>> g = torch.tensor([[3.0, -2.0, 1.0]])
        >>> sparse_direction(g, torch.tensor([2]))
        tensor([[ 0.5000, -0.5000,  0.0000]])
    """
    g = flat(grad)
    a = g.abs()
    kth = a.sort(dim=1, descending=True).values.gather(1, (k.long() - 1).clamp(0)[:, None])
    keep = (a >= kth) & (a > 0)
    e = torch.sign(g) * keep / keep.sum(dim=1, keepdim=True).clamp_min(1)
    return e.view_as(grad)


def l1_sparse_step(
    x: Float[Tensor, " b *s"],
    delta: Float[Tensor, " b *s"],
    grad: Float[Tensor, " b *s"],
    step_size: Float[Tensor, " b"],
    k: Int[Tensor, " b"],
    eps: Float[Tensor, " b"],
) -> Float[Tensor, " b *s"]:
    """The built-in l_1 players' sparse step: ``sparse_direction``, then the exact projection
    onto the l_1 ball ∩ box (``project_l1_ball_box``)."""
    moved = delta + per_example(step_size, x) * sparse_direction(grad, k)
    return project_l1_ball_box(flat(moved), flat(x), eps.to(x.dtype)).view_as(delta)


def first_sparsity(x: Tensor) -> Int[Tensor, " b"]:
    """APGD-L1's first ``k``: 20% of each input's coordinates (at least 1)."""
    n = x[0].numel()
    return torch.full((x.shape[0],), max(math.ceil(SPARSE_SHARE * n), 1), device=x.device)


def support(delta: Float[Tensor, " b *s"], eps: Float[Tensor, " b"]) -> Int[Tensor, " b"]:
    """The number of coordinates ``delta`` uses, per example: those above ``1e-6 * eps``.

    The l_1 projection leaves coordinates it cancels at rounding noise rather than exactly 0;
    counted, they would hold the sparsity up.

    Examples:
        >>> support(torch.tensor([[0.5, 1e-9, -0.2]]), torch.tensor([1.0]))
        tensor([2])
    """
    return (flat(delta).abs() > SUPPORT_TOL * eps[:, None].to(delta.dtype)).sum(dim=1)


def sparsity(support: Float[Tensor, " b"], n: int) -> Int[Tensor, " b"]:
    """The next steps' ``k`` from the size ``nnz`` of the best point's support:
    ``floor(nnz / 1.5)`` in ``[1, n]``.

    APGD-L1 rounds ``nnz / 1.5`` up, so a support of two coordinates keeps ``k = 2`` for good:
    equal steps on both then keep their difference, and on a linear model the attack stops at
    the mean of the two largest weights (97% of the optimum in ``tests/test_apgd.py``) instead
    of the largest. Rounding down lets ``k`` reach 1.

    Examples:
        >>> sparsity(torch.tensor([0.0, 2.0, 7.0]), 64)
        tensor([1, 1, 4])
    """
    return torch.floor(support / SPARSE_SHRINK).long().clamp(1, n)


def choose_step(player: Player, step: str) -> object | None:
    """The sparse step ``apgd`` takes with ``player`` (``step`` as in ``STEPS``), or ``None`` for
    the generic step.

    A player declares its own sparse step by implementing ``SparseStepPlayer.sparse_step``; the
    member is checked (callable, six positional arguments) with a message naming the fix.
    """
    declared = hasattr(player, "sparse_step")
    if declared:
        member = player.sparse_step  # type: ignore[attr-defined]
        if not callable(member):
            raise TypeError(
                f"player {player.name!r} has a sparse_step that is not a method "
                f"({type(member).__name__}); define sparse_step(x, delta, grad, step_size, k, "
                "eps) as SparseStepPlayer documents, or remove it"
            )
        try:
            inspect.signature(member).bind(*range(6))
        except TypeError as e:
            raise TypeError(
                f"player {player.name!r}: sparse_step must take (x, delta, grad, step_size, k, "
                f"eps) as SparseStepPlayer documents; {e}"
            ) from None
    if step == "generic":
        return None
    if declared:
        return player.sparse_step  # type: ignore[attr-defined]
    if isinstance(player, L1):
        return l1_sparse_step
    if step == "sparse":
        raise TypeError(
            f"step='sparse' needs a player with a sparse step; {type(player).__name__} "
            f"({player.name!r}) is not an l_1 player and does not implement "
            "sparse_step(x, delta, grad, step_size, k, eps) (SparseStepPlayer); implement it "
            "or pass step='auto'"
        )
    return None
