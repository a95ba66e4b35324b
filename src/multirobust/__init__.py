"""multirobust: training and evaluating classifiers robust to several threat models at once.

Players (threat models), aggregators (the paper's MAX, AVG, MSD), budget policies (fixed, the
paper's AdaptiveBudget) and objectives (cross-entropy, TRADES) are small typed protocols with
frozen built-ins, composed by pure functions into a game, which a ``Trainer`` plays.

Examples:
    >>> import multirobust as mr
    >>> game = mr.adaptive(mr.msd(mr.linf, mr.l2, mr.l1), norm="l2")
    >>> game.aggregator.names
    ('linf', 'l2', 'l1')
"""

from multirobust import checkpoint, data, diagnostics, models
from multirobust.aggregators import (
    Aggregator,
    Avg,
    Max,
    Msd,
    Perturbed,
    attack_each,
    avg,
    base_budgets,
    max_,
    msd,
)
from multirobust.apgd import APGD, apgd
from multirobust.attacks import PGD, PGDResult, frozen_model, pgd, run_pgd
from multirobust.budgets import (
    Adaptive,
    BudgetPolicy,
    BudgetState,
    Fixed,
    adaptive,
    adaptive_factors,
    fixed,
)
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
from multirobust.history import History
from multirobust.measure import Measure, Measurements, measure_players
from multirobust.objectives import CrossEntropy, Objective, Trades, cross_entropy, trades
from multirobust.players import L1, L2, AdditivePlayer, Budget, Linf, Player, l1, l2, linf
from multirobust.training import NonFiniteTraining, Trainer, piecewise_linear

__all__ = [
    "APGD",
    "L1",
    "L2",
    "PGD",
    "SUITES",
    "Adaptive",
    "AdditivePlayer",
    "Aggregator",
    "Avg",
    "Budget",
    "BudgetPolicy",
    "BudgetState",
    "CrossEntropy",
    "Curve",
    "Fixed",
    "History",
    "InfeasiblePerturbation",
    "L1Eval",
    "Linf",
    "Max",
    "Measure",
    "Measurements",
    "Msd",
    "NonFiniteTraining",
    "Objective",
    "PGDResult",
    "Perturbed",
    "Player",
    "PlayerGradients",
    "Report",
    "RobustnessWarning",
    "Trades",
    "Trainer",
    "adaptive",
    "adaptive_factors",
    "apgd",
    "attack_each",
    "avg",
    "base_budgets",
    "check_feasibility",
    "checkpoint",
    "combine",
    "cross_entropy",
    "data",
    "diagnostics",
    "evaluate",
    "fixed",
    "frozen_model",
    "l1",
    "l1_eval",
    "l2",
    "linf",
    "max_",
    "measure_players",
    "models",
    "msd",
    "paper_eval_steps",
    "pgd",
    "piecewise_linear",
    "player_gradients",
    "plot_curves",
    "robustness_curve",
    "run_pgd",
    "table",
    "trades",
    "union_accuracy",
]
__version__ = "0.1.0"
