"""Training runs of the SVM experiment with MAX, MSD or AVG, their records and summaries.

Examples:
    >>> from multirobust.paper.svm.problem import budgets_for, default_mu, make_data
    >>> x, y = make_data(n=100, d=4)
    >>> len(train(x, y, budgets_for("all-2mu", default_mu(4)), epochs=2).records)
    3
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks
from multirobust.paper.svm.attacks import (
    _losses_from_margins,
    _margin_shifts,
    attack_direction,
    count_flips,
    gamma_for,
)
from multirobust.paper.svm.problem import (
    AGGREGATORS,
    L1_MODES,
    LOSS_CONVENTION,
    PLAYERS,
    SETTINGS,
    _check_budgets,
    _check_like_x,
    _check_w,
    _check_xy,
)
from multirobust.paper.svm.solver import (
    SphereSolution,
    _check_solver,
    _natural,
    _solve,
    _value_and_grad,
)


@dataclasses.dataclass(frozen=True)
class EpochRecord:
    """One row of a run; the convention is ``LOSS_CONVENTION``.

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
            >>> from multirobust.paper.svm.problem import budgets_for, default_mu, make_data
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
        >>> from multirobust.paper.svm.problem import budgets_for, default_mu, make_data
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
        >>> from multirobust.paper.svm.problem import budgets_for, default_mu, make_data
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
