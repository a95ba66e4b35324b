"""multirobust: training and evaluating classifiers robust to several threat models at once.

Players (threat models), aggregators (the paper's MAX, AVG, MSD) and budget policies (fixed, the
paper's AdaptiveBudget) are small frozen values composed by pure functions into a game, which a
``Trainer`` plays.

Examples:
    >>> import multirobust as mr
    >>> game = mr.adaptive(mr.msd(mr.linf, mr.l2, mr.l1), norm="l2")
    >>> game.aggregator.names
    ('linf', 'l2', 'l1')
"""

from multirobust import diagnostics
from multirobust.aggregators import Avg, Max, Msd, Perturbed, avg, max_, msd
from multirobust.attacks import PGD, PGDResult, pgd
from multirobust.budgets import Adaptive, BudgetState, Fixed, adaptive, adaptive_factors, fixed
from multirobust.debug import InfeasiblePerturbation, check_feasibility
from multirobust.evaluation import (
    SUITES,
    Curve,
    L1Eval,
    Report,
    RobustnessWarning,
    combine,
    evaluate,
    l1_eval,
    paper_eval_steps,
    plot_curves,
    robustness_curve,
    table,
    union_accuracy,
)
from multirobust.gradients import PlayerGradients, player_gradients
from multirobust.players import L1, L2, Budget, Linf, Player, l1, l2, linf
from multirobust.training import History, NonFiniteTraining, Trainer, piecewise_linear

__all__ = [
    "L1",
    "L2",
    "PGD",
    "SUITES",
    "Adaptive",
    "Avg",
    "Budget",
    "BudgetState",
    "Curve",
    "Fixed",
    "History",
    "InfeasiblePerturbation",
    "L1Eval",
    "Linf",
    "Max",
    "Msd",
    "NonFiniteTraining",
    "PGDResult",
    "Perturbed",
    "Player",
    "PlayerGradients",
    "Report",
    "RobustnessWarning",
    "Trainer",
    "adaptive",
    "adaptive_factors",
    "avg",
    "check_feasibility",
    "combine",
    "diagnostics",
    "evaluate",
    "fixed",
    "l1",
    "l1_eval",
    "l2",
    "linf",
    "max_",
    "msd",
    "paper_eval_steps",
    "pgd",
    "piecewise_linear",
    "player_gradients",
    "plot_curves",
    "robustness_curve",
    "table",
    "union_accuracy",
]
__version__ = "0.1.0"
