"""The paper's synthetic SVM experiment (Sec. 4.1, App. C.1, Figs. 3-5) in closed form.

Data: ``y`` uniform in {-1, +1}; the robust feature ``x_1 = y`` with probability ``p``, else ``-y``;
the ``d`` non-robust features ``x_2..x_{d+1}`` i.i.d. ``N(mu*y, 1)``. Tensors are 0-based, so the
robust feature is column 0 and the non-robust ones are columns ``1..d``.

Model: a linear ``w`` on the unit sphere ``||w||_2 = 1`` with the soft-SVM loss
``max(0, 1 - y w.(x + delta))``. Each player's worst perturbation has a closed form at the current
``w``, ``delta_p = -y eps_p s_p(w)`` with ``s_inf = sign(w)``, ``s_2 = w / ||w||_2`` and, for l_1,
either the paper's ``s_1 = w / ||w||_1`` (``l1_mode="paper"``) or the exact worst case, all the mass
on the coordinate of largest ``|w_i|`` (``l1_mode="exact"``). For a linear model a perturbation
only shifts the margin, ``y w.delta_p = -eps_p w.s_p``, the same for every example, so losses come
from one matrix-vector product without materialising ``n x (d+1)`` perturbed data.

Training (``train``): ``w_0`` is the natural-training argmin on the sphere; each epoch takes the
perturbations from ``w_{t-1}``, weighs the players with ``gamma`` (AVG: 1/3 each; MAX and MSD:
one-hot on the player with the largest loss, which coincide here, paper Lemma 12) and then either
solves ``w_t = argmin_{||w||=1} sum_p gamma_p E[loss_p]`` with the perturbations fixed
(``setting="argmin"``, the paper's Sec. 4.1) or takes one projected subgradient step
(``setting="gradient-step"``, the setting of the paper's Theorems 4-5).

Recording convention (the spec is silent; chosen here and used everywhere): the row of epoch ``t``
holds each player's loss **at** ``w_t`` **under its own closed-form attack at** ``w_t`` (the robust
loss of the model after the epoch), the dominant player at ``w_t`` (largest of those losses),
the ``gamma`` that produced ``w_t`` (computed from the losses at ``w_{t-1}``), the number of
non-robust weights whose sign differs between ``w_{t-1}`` and ``w_t``, and ``objective``, the
weighted loss minimised in epoch ``t`` evaluated at ``w_t`` (perturbations of ``w_{t-1}``).
Epoch 0 is ``w_0``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks

PLAYERS = ("linf", "l2", "l1")
"""Player order of every loss / gamma vector; ties for the largest loss go to the earlier one."""
AGGREGATORS = ("max", "msd", "avg")
SETTINGS = ("argmin", "gradient-step")
L1_MODES = ("paper", "exact")
BUDGET_SETTINGS = ("all-2mu", "l1-4mu", "l2-4mu")
LOSS_CONVENTION = (
    "losses[t][p]: player p's loss at w_t under its own closed-form attack at w_t; "
    "dominant: argmax of those; gamma: the weights that produced w_t (from the losses at w_{t-1}); "
    "flips: non-robust weights whose sign differs between w_{t-1} and w_t; objective: the weighted "
    "loss minimised in epoch t, at w_t, with the perturbations of w_{t-1}"
)


def default_mu(d: int) -> float:
    """The paper's mean of the non-robust features, ``4 / sqrt(d)``.

    Examples:
        >>> default_mu(1000)
        0.12649110640673517
    """
    _checks.integer_at_least("d", d, 1)
    return 4.0 / math.sqrt(d)


def make_data(
    n: int = 100_000,
    d: int = 1000,
    p: float = 0.95,
    mu: float | None = None,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Float[Tensor, "n d1"], Float[Tensor, " n"]]:
    """Sample the paper's synthetic data set.

    Args:
        n: number of examples (>= 1).
        d: number of non-robust features (>= 1); ``x`` has ``d + 1`` columns.
        p: probability in (0, 1) that the robust feature ``x[:, 0]`` equals ``y``.
        mu: mean (times ``y``) of the non-robust features; ``None`` means ``4 / sqrt(d)``.
        generator: the CPU random generator; ``None`` means a fresh one seeded with 0.
        dtype: floating dtype of ``x`` and ``y``.

    Returns:
        ``(x, y)``: ``x`` of shape ``[n, d + 1]`` and labels ``y`` in {-1, +1} of shape ``[n]``.

    Examples:
        >>> x, y = make_data(n=4, d=3, generator=torch.Generator().manual_seed(0))
        >>> tuple(x.shape), sorted(set(y.tolist())) <= [-1.0, 1.0]
        ((4, 4), True)
    """
    _checks.integer_at_least("n", n, 1)
    _checks.integer_at_least("d", d, 1)
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 < float(p) < 1.0:
        raise ValueError(f"p must be a probability in (0, 1), got {p!r}")
    mu = default_mu(d) if mu is None else _checks.positive_finite("mu", mu)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    g = torch.Generator().manual_seed(0) if generator is None else generator
    y = torch.randint(0, 2, (n,), generator=g).to(dtype) * 2 - 1
    agree = torch.rand(n, generator=g, dtype=dtype) < p
    noise = torch.randn(n, d, generator=g, dtype=dtype)
    noise += mu * y[:, None]
    return torch.cat([torch.where(agree, y, -y)[:, None], noise], dim=1), y


def budgets_for(setting: str, mu: float) -> dict[str, float]:
    """The budgets of the paper's three SVM settings, keyed by player.

    Args:
        setting: ``"all-2mu"`` (every budget ``2 mu``, Fig. 3), ``"l1-4mu"`` (``eps_1 = 4 mu``,
            the others ``2 mu``, Fig. 4) or ``"l2-4mu"`` (``eps_2 = 4 mu``, the others ``2 mu``,
            Fig. 5).
        mu: the data's ``mu`` (> 0).

    Returns:
        ``{"linf": eps_inf, "l2": eps_2, "l1": eps_1}``.

    Examples:
        >>> budgets_for("l1-4mu", 0.5)
        {'linf': 1.0, 'l2': 1.0, 'l1': 2.0}
    """
    _checks.one_of("setting", setting, BUDGET_SETTINGS)
    mu = _checks.positive_finite("mu", mu)
    budgets = dict.fromkeys(PLAYERS, 2 * mu)
    if setting == "l1-4mu":
        budgets["l1"] = 4 * mu
    elif setting == "l2-4mu":
        budgets["l2"] = 4 * mu
    return budgets


def _check_w(w: Tensor, name: str = "w") -> None:
    if w.dim() != 1 or not bool(torch.isfinite(w).all()) or not bool((w != 0).any()):
        raise ValueError(
            f"{name} must be a finite, non-zero vector [d + 1], got shape {list(w.shape)}"
        )


def _check_like_x(name: str, t: Tensor, x: Tensor, rows: bool = False) -> None:
    """``t`` must be a vector ``[d + 1]`` (``[k, d + 1]`` with ``rows``) of ``x``'s dtype: torch's
    own errors for either mismatch name neither the argument nor the fix."""
    d1 = x.shape[1]
    fits = t.dim() == 1 + rows and t.shape[-1] == d1 and t.dtype == x.dtype
    if not fits:
        shape = f"[k, {d1}]" if rows else f"[{d1}]"
        raise ValueError(
            f"{name} must be {shape} (d + 1 = {d1}, as x) of x's dtype {x.dtype}, got "
            f"{t.dtype} {list(t.shape)}; make it with dtype=x.dtype"
        )


def _check_xy(x: Tensor, y: Tensor) -> None:
    """Data as ``make_data`` returns it: finite ``x`` ``[n, d + 1]``, labels ``y`` in {-1, +1}."""
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be [n, d + 1] and y [n]; got {list(x.shape)}, {list(y.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values; the SVM needs finite inputs")
    if not bool(((y == 1) | (y == -1)).all()):
        found = torch.unique(y)[:4].tolist()
        raise ValueError(
            f"y must hold labels in {{-1, +1}}, got values such as {found}; map 0/1 labels "
            "with y * 2 - 1"
        )


def _check_budgets(budgets: dict[str, float]) -> dict[str, float]:
    if not isinstance(budgets, dict) or set(budgets) != set(PLAYERS):
        got = sorted(budgets) if isinstance(budgets, dict) else type(budgets).__name__
        raise ValueError(f"budgets must be a dict with exactly the keys {PLAYERS}, got {got}")
    return {k: _checks.positive_finite(f"budgets[{k!r}]", budgets[k]) for k in PLAYERS}


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


@dataclasses.dataclass(frozen=True)
class SphereSolution:
    """What the sphere solver found.

    Attributes:
        w: the solution, ``||w||_2 = 1``.
        objective: the objective at ``w``.
        iterations: accepted gradient steps.
        converged: whether it stopped by a convergence test rather than the iteration cap or a
            stalled line search.
        stop_reason: ``"zero-loss"``, ``"stationary"``, ``"tolerance"``, ``"stalled"`` or
            ``"max-iter"``.
        tangent_grad_norm: norm of the (sub)gradient projected on the sphere's tangent space at
            ``w``.
    """

    w: Tensor
    objective: float
    iterations: int
    converged: bool
    stop_reason: str
    tangent_grad_norm: float


def _value_and_grad(
    yx: Tensor, shifts: Tensor, gamma: Tensor, w: Tensor, m: Tensor | None = None
) -> tuple[float, Tensor, Tensor]:
    """Objective ``sum_k gamma_k mean relu(1 - yx w + shifts_k.w)``, a subgradient, and ``yx w``.

    ``shifts`` and ``gamma`` hold only the players with ``gamma_k > 0``; the subgradient counts an
    example as active where its slack is > 0.
    """
    m = yx @ w if m is None else m
    slack = 1 - m[None, :] + (shifts @ w)[:, None]
    active = (slack > 0).to(m.dtype)
    value = float(gamma @ slack.clamp_min(0).mean(dim=1))
    grad = shifts.T @ (gamma * active.mean(dim=1)) - (gamma @ active / m.numel()) @ yx
    return value, grad, m


def _value(yx: Tensor, shifts: Tensor, gamma: Tensor, w: Tensor) -> tuple[float, Tensor]:
    m = yx @ w
    slack = 1 - m[None, :] + (shifts @ w)[:, None]
    return float(gamma @ slack.clamp_min(0).mean(dim=1)), m


def _tangent(w: Tensor, g: Tensor) -> Tensor:
    return g - (g @ w) * w


def _solve(
    yx: Tensor, shifts: Tensor, gamma: Tensor, w_init: Tensor, tol: float, max_iter: int
) -> SphereSolution:
    """Projected gradient descent on the sphere, Barzilai-Borwein steps, Armijo backtracking."""
    keep = gamma > 0
    shifts, gamma = shifts[keep], gamma[keep]
    w = w_init / w_init.norm()
    f, g, _ = _value_and_grad(yx, shifts, gamma, w)
    gt = _tangent(w, g)
    t = 0.1 / max(float(gt.norm()), 1e-12)
    reason, small, k = "max-iter", 0, 0
    while True:
        if f == 0.0:
            reason = "zero-loss"
            break
        if float(gt.norm()) <= 1e-12:
            reason = "stationary"
            break
        if k >= max_iter:
            break
        for _ in range(60):
            w_new = w - t * gt
            w_new = w_new / w_new.norm()
            f_new, m_new = _value(yx, shifts, gamma, w_new)
            if f_new <= f - 1e-4 * float((w_new - w).square().sum()) / t:
                break
            t *= 0.5
        else:
            reason = "stalled"
            break
        _, g_new, _ = _value_and_grad(yx, shifts, gamma, w_new, m_new)
        gt_new = _tangent(w_new, g_new)
        step, dgrad = w_new - w, gt_new - gt
        curvature = float(step @ dgrad)
        t = float(step @ step) / curvature if curvature > 0 else 2 * t
        t = min(max(t, 1e-10), 1e10)
        small = small + 1 if f - f_new <= tol * max(1.0, abs(f)) else 0
        w, f, gt, k = w_new, f_new, gt_new, k + 1
        if small >= 3:
            reason = "tolerance"
            break
    converged = reason in ("zero-loss", "stationary", "tolerance")
    return SphereSolution(w, f, k, converged, reason, float(gt.norm()))


def _check_solver(tol: float, max_iter: int) -> None:
    _checks.positive_finite("tol", tol)
    _checks.integer_at_least("max_iter", max_iter, 1)


def solve_sphere(
    x: Float[Tensor, "n d1"],
    y: Float[Tensor, " n"],
    shifts: Float[Tensor, "k d1"],
    gamma: Float[Tensor, " k"],
    w_init: Float[Tensor, " d1"],
    *,
    tol: float = 1e-9,
    max_iter: int = 1000,
) -> SphereSolution:
    """Minimise ``sum_k gamma_k mean max(0, 1 - y w.x + shifts_k.w)`` over ``||w||_2 = 1``.

    A player's fixed perturbation ``delta_k = -y eps_k s_k`` enters as ``shifts_k = eps_k s_k``.
    Projected gradient descent on the sphere (Barzilai-Borwein step, Armijo backtracking) from
    ``w_init``; it stops when the loss is 0, the tangent gradient vanishes, or the relative decrease
    stays below ``tol`` for 3 steps in a row (converged), or at ``max_iter`` steps or when the line
    search stalls (not converged).

    Args:
        x: inputs ``[n, d + 1]``.
        y: labels in {-1, +1}.
        shifts: one row ``eps_k s_k`` per player (zeros: no perturbation).
        gamma: the players' weights (>= 0).
        w_init: start point (non-zero; it is normalised).
        tol: relative objective decrease per step below which the solver counts as converged.
        max_iter: cap on gradient steps.

    Returns:
        A ``SphereSolution``.

    Examples:
        >>> x, y = make_data(n=200, d=5)
        >>> sol = solve_sphere(x, y, torch.zeros(1, 6, dtype=x.dtype),
        ...                    torch.ones(1, dtype=x.dtype), torch.ones(6, dtype=x.dtype))
        >>> sol.converged, round(float(sol.w.norm()), 6)
        (True, 1.0)
    """
    _check_solver(tol, max_iter)
    _check_w(w_init, "w_init")
    _check_xy(x, y)
    _check_like_x("w_init", w_init, x)
    _check_like_x("shifts", shifts, x, rows=True)
    if shifts.shape[0] != gamma.shape[0] or bool((gamma < 0).any()):
        raise ValueError("gamma must be non-negative with one entry per row of shifts")
    return _solve(x * y[:, None], shifts, gamma.to(x.dtype), w_init, tol, max_iter)


def _natural(yx: Tensor, tol: float, max_iter: int) -> SphereSolution:
    shifts = torch.zeros(1, yx.shape[1], dtype=yx.dtype)
    return _solve(yx, shifts, torch.ones(1, dtype=yx.dtype), yx.mean(dim=0), tol, max_iter)


def natural_weights(
    x: Float[Tensor, "n d1"],
    y: Float[Tensor, " n"],
    *,
    tol: float = 1e-9,
    max_iter: int = 1000,
) -> SphereSolution:
    """Natural training, the paper's ``w_0``: the soft-SVM argmin on the sphere without attacks.

    The solver starts from the class-centroid direction ``mean(y x)``. At the paper's size the data
    are separable with margin 1 on the sphere, so the argmin is a set (every zero-loss ``w``); the
    returned ``w_0`` is the first zero-loss point reached from that start.

    Args:
        x: inputs ``[n, d + 1]``.
        y: labels in {-1, +1}.
        tol: see ``solve_sphere``.
        max_iter: see ``solve_sphere``.

    Returns:
        A ``SphereSolution``.

    Examples:
        >>> x, y = make_data(n=200, d=5)
        >>> round(float(natural_weights(x, y).w.norm()), 6)
        1.0
    """
    _check_solver(tol, max_iter)
    _check_xy(x, y)
    return _natural(x * y[:, None], tol, max_iter)


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One row of a run; see the module docstring for the convention.

    Attributes:
        epoch: ``t`` (0 is ``w_0``).
        losses: each player's loss at ``w_t`` under its own attack at ``w_t``.
        dominant: the player with the largest of those losses.
        gamma: the weights that produced ``w_t`` (``None`` at epoch 0).
        flips: non-robust weights whose sign differs from ``w_{t-1}`` (``None`` at epoch 0).
        objective: the loss minimised in epoch ``t`` at ``w_t`` (epoch 0: the natural loss).
        robust_weight: ``w_t[0]``, the weight of the robust feature.
        solver_iterations: steps of the argmin solver (1 in the gradient-step setting; 0 at
            epoch 0 when ``w0`` was given).
        converged: whether the argmin solver converged (``None`` for a gradient step or a given
            ``w0``).
        tangent_grad_norm: the solver's final tangent gradient norm (``None`` where ``converged``
            is).
    """

    epoch: int
    losses: dict[str, float]
    dominant: str
    gamma: dict[str, float] | None
    flips: int | None
    objective: float
    robust_weight: float
    solver_iterations: int
    converged: bool | None
    tangent_grad_norm: float | None


@dataclasses.dataclass(frozen=True)
class SVMRun:
    """A training run of the SVM experiment.

    Attributes:
        aggregator: ``"max"``, ``"msd"`` or ``"avg"``.
        setting: ``"argmin"`` or ``"gradient-step"``.
        budgets: the players' budgets.
        l1_mode: which l_1 attack was used (``"paper"`` or ``"exact"``).
        lr: the learning rate of the gradient-step setting (``None`` for argmin).
        tol: the argmin solver's tolerance.
        max_iter: the argmin solver's iteration cap.
        n: examples.
        d: non-robust features.
        records: one ``EpochRecord`` per epoch, epoch 0 first.
        w: the final weights.
    """

    aggregator: str
    setting: str
    budgets: dict[str, float]
    l1_mode: str
    lr: float | None
    tol: float
    max_iter: int
    n: int
    d: int
    records: list[EpochRecord]
    w: Tensor

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no tensors): the settings, the convention and every record.

        Examples:
            >>> x, y = make_data(n=100, d=4)
            >>> run = train(x, y, budgets_for("all-2mu", default_mu(4)), epochs=1)
            >>> run.to_dict()["l1_mode"], len(run.to_dict()["records"])
            ('paper', 2)
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "w"}
        out["records"] = [dataclasses.asdict(r) for r in self.records]
        out["players"] = list(PLAYERS)
        out["convention"] = LOSS_CONVENTION
        out["summary"] = summarize(self)
        return out


def _as_dict(v: Tensor) -> dict[str, float]:
    return {p: float(a) for p, a in zip(PLAYERS, v.tolist(), strict=True)}


def train(
    x: Float[Tensor, "n d1"],
    y: Float[Tensor, " n"],
    budgets: dict[str, float],
    *,
    aggregator: str = "max",
    setting: str = "argmin",
    epochs: int = 10,
    l1_mode: str = "paper",
    lr: float = 0.01,
    tol: float = 1e-9,
    max_iter: int = 1000,
    w0: Float[Tensor, " d1"] | None = None,
) -> SVMRun:
    """Train the linear SVM with MAX, MSD or AVG and record each epoch (paper Sec. 4.1).

    Args:
        x: inputs ``[n, d + 1]`` (column 0 is the robust feature).
        y: labels in {-1, +1}.
        budgets: ``{"linf": ..., "l2": ..., "l1": ...}``, each > 0 (see ``budgets_for``).
        aggregator: ``"max"``, ``"msd"`` (the same as MAX here, Lemma 12) or ``"avg"``.
        setting: ``"argmin"`` (solve each epoch's problem to convergence, perturbations fixed from
            ``w_{t-1}``) or ``"gradient-step"`` (one projected subgradient step of size ``lr``,
            ``w_t = normalise(w_{t-1} - lr g)``).
        epochs: number of epochs after ``w_0`` (>= 1).
        l1_mode: ``"paper"`` or ``"exact"`` l_1 attack.
        lr: step size of the gradient-step setting (> 0; ignored by argmin).
        tol: the argmin solver's tolerance (also used for ``w_0``).
        max_iter: the argmin solver's iteration cap.
        w0: a precomputed ``w_0`` (from ``natural_weights``), to share it between runs.

    Returns:
        An ``SVMRun`` with ``epochs + 1`` records.

    Examples:
        >>> x, y = make_data(n=200, d=6)
        >>> run = train(x, y, budgets_for("all-2mu", default_mu(6)), aggregator="avg", epochs=2)
        >>> [r.epoch for r in run.records], run.records[1].gamma["l2"]
        ([0, 1, 2], 0.3333333333333333)
    """
    _checks.integer_at_least("epochs", epochs, 1)
    _checks.one_of("aggregator", aggregator, AGGREGATORS)
    _checks.one_of("setting", setting, SETTINGS)
    _checks.one_of("l1_mode", l1_mode, L1_MODES)
    _checks.positive_finite("lr", lr)
    _check_solver(tol, max_iter)
    budgets = _check_budgets(budgets)
    _check_xy(x, y)
    yx = x * y[:, None]
    if w0 is None:
        start = _natural(yx, tol, max_iter)
    else:
        _check_w(w0, "w0")
        _check_like_x("w0", w0, x)
        w = w0 / w0.norm()
        start = SphereSolution(w, float(torch.relu(1 - yx @ w).mean()), 0, True, "given", 0.0)
    w = start.w
    m = yx @ w
    losses = _losses_from_margins(m, _margin_shifts(w, w, budgets, l1_mode))
    records = [
        EpochRecord(
            epoch=0,
            losses=_as_dict(losses),
            dominant=PLAYERS[int(losses.argmax())],
            gamma=None,
            flips=None,
            objective=start.objective,
            robust_weight=float(w[0]),
            solver_iterations=start.iterations,
            converged=None if w0 is not None else start.converged,
            tangent_grad_norm=None if w0 is not None else start.tangent_grad_norm,
        )
    ]
    for t in range(1, epochs + 1):
        gamma = gamma_for(losses, aggregator)
        shifts = torch.stack([budgets[p] * attack_direction(w, p, l1_mode) for p in PLAYERS])
        if setting == "argmin":
            sol = _solve(yx, shifts, gamma, w, tol, max_iter)
            w_new, iters, conv, tgn = sol.w, sol.iterations, sol.converged, sol.tangent_grad_norm
        else:
            keep = gamma > 0
            _, grad, _ = _value_and_grad(yx, shifts[keep], gamma[keep], w, m)
            w_new = w - lr * grad
            w_new = w_new / w_new.norm()
            iters, conv, tgn = 1, None, None
        m = yx @ w_new
        objective = float((gamma * _losses_from_margins(m, shifts @ w_new)).sum())
        losses = _losses_from_margins(m, _margin_shifts(w_new, w_new, budgets, l1_mode))
        records.append(
            EpochRecord(
                epoch=t,
                losses=_as_dict(losses),
                dominant=PLAYERS[int(losses.argmax())],
                gamma=_as_dict(gamma),
                flips=count_flips(w, w_new),
                objective=objective,
                robust_weight=float(w_new[0]),
                solver_iterations=iters,
                converged=conv,
                tangent_grad_norm=tgn,
            )
        )
        w = w_new
    return SVMRun(
        aggregator=aggregator,
        setting=setting,
        budgets=budgets,
        l1_mode=l1_mode,
        lr=lr if setting == "gradient-step" else None,
        tol=tol,
        max_iter=max_iter,
        n=x.shape[0],
        d=x.shape[1] - 1,
        records=records,
        w=w,
    )


def summarize(run: SVMRun) -> dict[str, Any]:
    """Numbers that check the paper's claims on a run (thresholds fixed, not tuned).

    ``tail`` is the last quarter of the epochs (at least 2). ``settled``: at most 1% of the ``d``
    non-robust weights flip in every tail epoch. ``max_loss_increases`` / ``mean_loss_decreases``:
    epochs ``t >= 1`` where the largest player loss rose / the players' mean loss fell compared with
    epoch ``t - 1`` (Theorems 4 and 5).

    Args:
        run: a finished run.

    Returns:
        A JSON-ready dict.

    Examples:
        >>> x, y = make_data(n=100, d=4)
        >>> summarize(train(x, y, budgets_for("all-2mu", default_mu(4)), epochs=2))["epochs"]
        2
    """
    recs = run.records[1:]
    flips = [r.flips for r in recs]
    after_first = flips[1:] or flips
    tail = recs[-max(2, len(recs) // 4) :]
    tail_flips = [r.flips for r in tail]
    top = [max(r.losses.values()) for r in run.records]
    mean = [sum(r.losses.values()) / len(PLAYERS) for r in run.records]
    dominant = {p: sum(r.dominant == p for r in recs) for p in PLAYERS}
    return {
        "epochs": len(recs),
        "dominant_epochs": dominant,
        "flips_epoch1": flips[0],
        "flips_after_first": {
            "min": min(after_first),
            "median": sorted(after_first)[len(after_first) // 2],
            "max": max(after_first),
        },
        "tail_epochs": len(tail),
        "tail_flips": {"min": min(tail_flips), "max": max(tail_flips)},
        "tail_max_loss": {
            "min": min(max(r.losses.values()) for r in tail),
            "max": max(max(r.losses.values()) for r in tail),
        },
        "settled": max(tail_flips) <= 0.01 * run.d,
        "max_loss_increases": sum(b > a for a, b in itertools.pairwise(top)),
        "mean_loss_decreases": sum(b < a for a, b in itertools.pairwise(mean)),
        "all_converged": all(r.converged is not False for r in recs),
    }
