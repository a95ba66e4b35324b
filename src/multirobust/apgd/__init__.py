"""Auto-PGD (Croce & Hein, ICML 2020) and APGD-L1 (Croce & Hein, ICML 2021) over the ``Player``
protocol: ``apgd(player, steps, restarts, loss)`` returns an attack like ``pgd``'s.

A player needs nothing beyond the ``Player`` protocol; a player with a sparse step of its own
declares it by implementing ``SparseStepPlayer.sparse_step``.

Examples:
    >>> import multirobust as mr
    >>> from multirobust.apgd import apgd
    >>> apgd(mr.linf(eps=0.1), steps=50).steps
    50
"""

from multirobust.apgd.attack import APGD, apgd, run_apgd
from multirobust.apgd.losses import LOSSES
from multirobust.apgd.steps import STEPS, SparseStepPlayer, checkpoints, sparse_checkpoints

__all__ = [
    "APGD",
    "LOSSES",
    "STEPS",
    "SparseStepPlayer",
    "apgd",
    "checkpoints",
    "run_apgd",
    "sparse_checkpoints",
]
