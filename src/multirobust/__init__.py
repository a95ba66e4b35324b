"""multirobust: training and evaluating classifiers robust to several threat models at once.

Example:
    >>> import multirobust as mr
    >>> game = mr.adaptive(mr.msd(mr.linf, mr.l2, mr.l1), norm="l2")
"""

from multirobust.attacks import PGD, PGDResult, pgd
from multirobust.players import L1, L2, Budget, Linf, Player, l1, l2, linf

__all__ = [
    "L1",
    "L2",
    "PGD",
    "Budget",
    "Linf",
    "PGDResult",
    "Player",
    "l1",
    "l2",
    "linf",
    "pgd",
]
__version__ = "0.1.0"
