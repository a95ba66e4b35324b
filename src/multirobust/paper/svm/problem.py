"""The SVM problem: the players, the paper's data and budgets, and the input checks.

Examples:
    >>> x, y = make_data(n=4, d=3)
    >>> tuple(x.shape), budgets_for("all-2mu", 0.5)["l1"]
    ((4, 4), 1.0)
"""

from __future__ import annotations

import math
import numbers

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
