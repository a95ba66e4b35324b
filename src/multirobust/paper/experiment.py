"""What the recipes share, in one namespace: the paper's settings and games
(``multirobust.paper.settings``), checkpointed runs and their files (``multirobust.paper.runs``),
one run per ``--out`` at a time (``multirobust.paper.claim``), ``torchrun`` set-up
(``multirobust.paper.distributed``) and run plots (``multirobust.paper.plots``).

Examples:
    >>> from multirobust.paper import experiment as ex
    >>> s = ex.paper_settings("cifar10")
    >>> [p.name for p in s.players], s.msd_steps, s.batch_size
    (['linf', 'l2', 'l1'], 50, 128)
    >>> ex.make_game(s.players, method="msd", adaptive="l2", msd_steps=s.msd_steps).norm
    'l2'
"""

from multirobust.paper.claim import LOCK_FILE, claim_out, release_out
from multirobust.paper.distributed import Distributed, init_distributed, weights_digest
from multirobust.paper.plots import plot_history
from multirobust.paper.runs import changed_settings, fit_with_checkpoints, read_json, save_json
from multirobust.paper.settings import (
    ADAPTIVE,
    METHODS,
    Settings,
    make_game,
    make_optimizer,
    paper_model,
    paper_schedule,
    paper_settings,
)

__all__ = [
    "ADAPTIVE",
    "LOCK_FILE",
    "METHODS",
    "Distributed",
    "Settings",
    "changed_settings",
    "claim_out",
    "fit_with_checkpoints",
    "init_distributed",
    "make_game",
    "make_optimizer",
    "paper_model",
    "paper_schedule",
    "paper_settings",
    "plot_history",
    "read_json",
    "release_out",
    "save_json",
    "weights_digest",
]
