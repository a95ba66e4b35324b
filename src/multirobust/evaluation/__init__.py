"""Robustness evaluation: per-threat and union ("All") accuracy (paper Sec. 6.1), robustness curves.

``evaluate`` attacks a model with each threat, batch by batch, and keeps only per-example
booleans, so a 10 000-image test set never has all its adversarial images in memory at once. The
``Report`` it returns prints as the paper's table and round-trips through JSON; its
per-example results combine across reports (``pgd_report & aa_report``). Before any attack the
model is checked for signs that gradient attacks would overestimate its robustness (softmax
outputs, randomness, zero input gradients); after, a one-step attack checks the multi-step one.

One job per module: ``suites`` (``evaluate``), ``protocol`` (the PGD protocol of one batch),
``autoattack`` (the AutoAttack adapter), ``masking`` (``RobustnessWarning`` and the checks),
``batches`` (data into checked batches), ``reports`` (``Report``, ``combine``, ``table``),
``curves`` (``Curve``, ``robustness_curve``), ``plotting`` (``plot_curves``) and ``l1``
(``L1Eval``, ``l1_eval``).

Examples:
    >>> import torch, multirobust as mr
    >>> from multirobust.evaluation import evaluate
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    >>> report = evaluate(model, (x, y), [mr.linf(eps=0.1, alpha=0.05, steps=2)], restarts=1)
    >>> sorted(report.accuracy)
    ['All', 'clean', 'linf']
"""

from multirobust.evaluation.curves import Curve, robustness_curve
from multirobust.evaluation.masking import OVERLOOKED_SHARE, ZERO_GRADIENT_SHARE, RobustnessWarning
from multirobust.evaluation.plotting import plot_curves
from multirobust.evaluation.reports import Report, combine, table, union_accuracy
from multirobust.evaluation.suites import (
    PAPER_EVAL_STEPS,
    SPARSE_L1_NOTE,
    SUITES,
    evaluate,
    paper_eval_steps,
)
from multirobust.players import L1Eval, l1_eval

__all__ = [
    "OVERLOOKED_SHARE",
    "PAPER_EVAL_STEPS",
    "SPARSE_L1_NOTE",
    "SUITES",
    "ZERO_GRADIENT_SHARE",
    "Curve",
    "L1Eval",
    "Report",
    "RobustnessWarning",
    "combine",
    "evaluate",
    "l1_eval",
    "paper_eval_steps",
    "plot_curves",
    "robustness_curve",
    "table",
    "union_accuracy",
]
