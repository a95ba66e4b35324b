"""Minimising the weighted soft-SVM loss on the unit sphere, and natural training (``w_0``).

Examples:
    >>> from multirobust.paper.svm.problem import make_data
    >>> x, y = make_data(n=200, d=5)
    >>> natural_weights(x, y).converged
    True
"""

from __future__ import annotations

import dataclasses

import torch
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks
from multirobust.paper.svm.problem import _check_like_x, _check_w, _check_xy


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
        >>> from multirobust.paper.svm.problem import make_data
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
        >>> from multirobust.paper.svm.problem import make_data
        >>> x, y = make_data(n=200, d=5)
        >>> round(float(natural_weights(x, y).w.norm()), 6)
        1.0
    """
    _check_solver(tol, max_iter)
    _check_xy(x, y)
    return _natural(x * y[:, None], tol, max_iter)
