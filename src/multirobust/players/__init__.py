"""Threat models as players: the ``Player`` protocol, ``AdditivePlayer``, and the built-in players.

Examples:
    >>> import multirobust as mr
    >>> mr.linf(eps=0.5).alpha  # step sizes follow the budget unless given
    0.05
"""

from multirobust.players.base import (
    AdditivePlayer,
    Budget,
    Player,
    check_players,
    check_settings,
    flat,
    missing_members,
    per_example,
)
from multirobust.players.l1_eval import L1Eval, l1_eval
from multirobust.players.norms import L1, L2, Linf, check_budget, l1, l2, linf

__all__ = [
    "L1",
    "L2",
    "AdditivePlayer",
    "Budget",
    "L1Eval",
    "Linf",
    "Player",
    "check_budget",
    "check_players",
    "check_settings",
    "flat",
    "l1",
    "l1_eval",
    "l2",
    "linf",
    "missing_members",
    "per_example",
]
