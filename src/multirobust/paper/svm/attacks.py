"""The closed-form attacks on a linear model, the players' losses as margin shifts, the
aggregators' weights and the sign-flip count.

Examples:
    >>> attack_direction(torch.tensor([3.0, -1.0]), "linf")
    tensor([ 1., -1.])
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks
from multirobust.paper.svm.problem import (
    AGGREGATORS,
    L1_MODES,
    PLAYERS,
    _check_budgets,
    _check_like_x,
    _check_w,
    _check_xy,
)


def attack_direction(w: Float[Tensor, " d1"], player: str, l1_mode: str = "paper") -> Tensor:
    """The unit-budget direction ``s_p(w)`` of a player's closed-form attack ``delta = -y eps s``.

    Args:
        w: the weights the attack targets (non-zero).
        player: ``"linf"`` (``sign(w)``), ``"l2"`` (``w / ||w||_2``) or ``"l1"``.
        l1_mode: ``"paper"`` (``w / ||w||_1``, as the paper states it) or ``"exact"``
            (``sign(w_j) e_j`` with ``j = argmax |w_i|``, the true worst case for a linear model).

    Returns:
        ``s`` with ``||s||_q = 1`` in the player's own norm ``q`` (for linf unless ``w`` has
        zeros, where ``sign`` is 0).

    Examples:
        >>> attack_direction(torch.tensor([3.0, -1.0]), "l1", "exact")
        tensor([1., 0.])
    """
    _check_w(w)
    _checks.one_of("player", player, PLAYERS)
    _checks.one_of("l1_mode", l1_mode, L1_MODES)
    if player == "linf":
        return torch.sign(w)
    if player == "l2":
        return w / w.norm()
    if l1_mode == "paper":
        return w / w.abs().sum()
    j = int(w.abs().argmax())
    s = torch.zeros_like(w)
    s[j] = torch.sign(w[j])
    return s


def perturbation(
    w: Float[Tensor, " d1"],
    y: Float[Tensor, " n"],
    player: str,
    eps: float,
    l1_mode: str = "paper",
) -> Float[Tensor, "n d1"]:
    """The materialised closed-form perturbation ``delta_p = -y eps s_p(w)`` of every example.

    Args:
        w: the weights the attack targets.
        y: labels in {-1, +1}.
        player: ``"linf"``, ``"l2"`` or ``"l1"``.
        eps: the budget (> 0).
        l1_mode: ``"paper"`` or ``"exact"`` (see ``attack_direction``).

    Returns:
        ``delta`` of shape ``[n, d + 1]``; each row has norm ``eps`` in the player's norm.

    Examples:
        >>> perturbation(torch.tensor([2.0, -1.0]), torch.tensor([1.0, -1.0]), "linf", 0.5)
        tensor([[-0.5000,  0.5000],
                [ 0.5000, -0.5000]])
    """
    eps = _checks.positive_finite("eps", eps)
    return -eps * y[:, None] * attack_direction(w, player, l1_mode)[None, :]


def hinge_loss(
    w: Float[Tensor, " d1"],
    x: Float[Tensor, "n d1"],
    y: Float[Tensor, " n"],
    delta: Float[Tensor, "n d1"] | None = None,
) -> Tensor:
    """Mean soft-SVM loss ``max(0, 1 - y w.(x + delta))`` on materialised data (the slow reference).

    Args:
        w: weights.
        x: inputs ``[n, d + 1]``.
        y: labels in {-1, +1}.
        delta: perturbations of ``x`` (``None``: none).

    Returns:
        A 0-d tensor.

    Examples:
        >>> float(hinge_loss(torch.tensor([1.0]), torch.tensor([[0.25]]), torch.tensor([1.0])))
        0.75
    """
    xa = x if delta is None else x + delta
    return torch.relu(1 - y * (xa @ w)).mean()


def _margin_shifts(w: Tensor, attack_w: Tensor, budgets: dict[str, float], l1_mode: str) -> Tensor:
    """``eps_p w.s_p(attack_w)`` per player: the amount each attack lowers every margin."""
    return torch.stack([budgets[p] * (w @ attack_direction(attack_w, p, l1_mode)) for p in PLAYERS])


def _losses_from_margins(m: Tensor, shifts: Tensor) -> Tensor:
    return torch.relu(1 - (m[None, :] - shifts[:, None])).mean(dim=1)


def player_losses(
    w: Float[Tensor, " d1"],
    x: Float[Tensor, "n d1"],
    y: Float[Tensor, " n"],
    budgets: dict[str, float],
    *,
    attack_w: Float[Tensor, " d1"] | None = None,
    l1_mode: str = "paper",
) -> Float[Tensor, " 3"]:
    """Each player's mean soft-SVM loss at ``w``, computed as margin shifts (no ``n x d`` copies).

    ``y w.(x + delta_p) = y w.x - eps_p w.s_p(attack_w)``; with ``attack_w = w`` the shift is
    ``eps ||w||_1`` (linf), ``eps ||w||_2`` (l2), ``eps ||w||_2^2 / ||w||_1`` (l1 paper) or
    ``eps ||w||_inf`` (l1 exact).

    Args:
        w: weights at which the loss is evaluated.
        x: inputs ``[n, d + 1]``.
        y: labels in {-1, +1}.
        budgets: ``{"linf": ..., "l2": ..., "l1": ...}``, each > 0.
        attack_w: the weights the perturbations were computed from (``None``: ``w`` itself).
        l1_mode: ``"paper"`` or ``"exact"``.

    Returns:
        Losses in the order of ``PLAYERS`` (linf, l2, l1).

    Examples:
        >>> w = torch.tensor([0.6, 0.8])
        >>> x, y = torch.tensor([[1.0, 1.0]]), torch.tensor([1.0])
        >>> player_losses(w, x, y, {"linf": 0.5, "l2": 0.5, "l1": 0.5})
        tensor([0.3000, 0.1000, 0.0000])
    """
    budgets = _check_budgets(budgets)
    _check_w(w)
    _check_xy(x, y)
    _check_like_x("w", w, x)
    if attack_w is not None:
        _check_w(attack_w, "attack_w")
        _check_like_x("attack_w", attack_w, x)
    attack_w = w if attack_w is None else attack_w
    return _losses_from_margins(y * (x @ w), _margin_shifts(w, attack_w, budgets, l1_mode))


def gamma_for(losses: Float[Tensor, " 3"], aggregator: str) -> Float[Tensor, " 3"]:
    """The aggregator's weights: AVG 1/3 each, MAX and MSD one-hot on the largest loss.

    MAX and MSD coincide for the linear SVM (paper Lemma 12): both pick the closed-form attack with
    the largest loss. Ties go to the earlier player in ``PLAYERS``.

    Args:
        losses: the players' losses, in the order of ``PLAYERS``.
        aggregator: ``"max"``, ``"msd"`` or ``"avg"``.

    Returns:
        ``gamma``, non-negative, summing to 1.

    Examples:
        >>> gamma_for(torch.tensor([0.2, 0.9, 0.1]), "max")
        tensor([0., 1., 0.])
    """
    _checks.one_of("aggregator", aggregator, AGGREGATORS)
    if aggregator == "avg":
        return torch.full_like(losses, 1.0 / losses.numel())
    return torch.nn.functional.one_hot(losses.argmax(), losses.numel()).to(losses.dtype)


def count_flips(w_prev: Float[Tensor, " d1"], w_new: Float[Tensor, " d1"]) -> int:
    """How many non-robust weights (indices ``1..d``) changed sign strictly (a zero is no flip).

    Args:
        w_prev: weights before the epoch.
        w_new: weights after it.

    Returns:
        The number of ``i >= 1`` with ``sign(w_prev[i]) * sign(w_new[i]) < 0``.

    Examples:
        >>> count_flips(torch.tensor([1.0, 1.0, -1.0, 0.0]), torch.tensor([-1.0, -2.0, 3.0, 1.0]))
        2
    """
    if w_prev.shape != w_new.shape or w_prev.dim() != 1:
        raise ValueError(
            f"w_prev and w_new must be vectors of the same shape, got {list(w_prev.shape)} "
            f"and {list(w_new.shape)}"
        )
    return int((torch.sign(w_prev[1:]) * torch.sign(w_new[1:]) < 0).sum())
