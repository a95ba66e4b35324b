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

Recording convention (chosen here and used everywhere): the row of epoch ``t``
holds each player's loss **at** ``w_t`` **under its own closed-form attack at** ``w_t`` (the robust
loss of the model after the epoch), the dominant player at ``w_t`` (largest of those losses),
the ``gamma`` that produced ``w_t`` (computed from the losses at ``w_{t-1}``), the number of
non-robust weights whose sign differs between ``w_{t-1}`` and ``w_t``, and ``objective``, the
weighted loss minimised in epoch ``t`` evaluated at ``w_t`` (perturbations of ``w_{t-1}``).
Epoch 0 is ``w_0``.

The parts: ``problem`` (data, budgets, checks), ``attacks`` (closed-form attacks and losses),
``solver`` (the sphere solver), ``train`` (runs and summaries); every public name is here.

Examples:
    >>> from multirobust.paper import svm
    >>> x, y = svm.make_data(n=200, d=6)
    >>> run = svm.train(x, y, svm.budgets_for("all-2mu", svm.default_mu(6)), epochs=2)
    >>> [r.epoch for r in run.records]
    [0, 1, 2]
"""

from multirobust.paper.svm.attacks import (
    attack_direction,
    count_flips,
    gamma_for,
    hinge_loss,
    perturbation,
    player_losses,
)
from multirobust.paper.svm.problem import (
    AGGREGATORS,
    BUDGET_SETTINGS,
    L1_MODES,
    LOSS_CONVENTION,
    PLAYERS,
    SETTINGS,
    budgets_for,
    default_mu,
    make_data,
)
from multirobust.paper.svm.solver import SphereSolution, natural_weights, solve_sphere
from multirobust.paper.svm.train import EpochRecord, SVMRun, summarize, train

__all__ = [
    "AGGREGATORS",
    "BUDGET_SETTINGS",
    "L1_MODES",
    "LOSS_CONVENTION",
    "PLAYERS",
    "SETTINGS",
    "EpochRecord",
    "SVMRun",
    "SphereSolution",
    "attack_direction",
    "budgets_for",
    "count_flips",
    "default_mu",
    "gamma_for",
    "hinge_loss",
    "make_data",
    "natural_weights",
    "perturbation",
    "player_losses",
    "solve_sphere",
    "summarize",
    "train",
]
