"""Player-domination diagnostics (paper App. C.3, Table 5): who dominates, and for how long.

The dominant player of a step is the one with the largest parameter-gradient norm. A *streak* is a
maximal run of consecutive steps with the same dominant player.

Examples:
    >>> s = streaks(["l1", "l1", "l2", "linf", "linf"])
    >>> s.longest, round(s.mean, 2)
    ({'l1': 2, 'l2': 1, 'linf': 2}, 1.67)
"""

import dataclasses
import os
from collections.abc import Iterable, Sequence
from typing import Any

from multirobust.history import History

Records = History | Sequence[dict[str, Any]] | str | os.PathLike[str]


@dataclasses.dataclass(frozen=True)
class Streaks:
    """Streak statistics of a sequence of dominant players.

    Attributes:
        longest: the longest streak of each player that dominated at least once.
        mean: the mean length over all streaks (0.0 for an empty sequence).
        count: the number of streaks.
        dominated: how many steps each player dominated.
    """

    longest: dict[str, int]
    mean: float
    count: int
    dominated: dict[str, int]

    def __str__(self) -> str:
        rows = [f"{'player':<10}{'longest streak':>16}{'steps dominated':>17}"]
        for name in self.longest:
            rows.append(f"{name:<10}{self.longest[name]:>16}{self.dominated[name]:>17}")
        rows.append(f"mean streak {self.mean:.2f} over {self.count} streaks")
        return "\n".join(rows)


def streaks(dominant: Iterable[str | None]) -> Streaks:
    """Longest streak per player and mean streak length; ``None`` entries (no gradients computed
    that step) end a streak and are otherwise skipped.

    Args:
        dominant: the dominant player of each step, in order.

    Raises:
        TypeError: ``dominant`` is one string (one step's name, not a sequence of them).
    """
    if isinstance(dominant, str):
        raise TypeError(
            f"dominant must be a sequence of player names, one per step, got the string "
            f"{dominant!r}; pass e.g. [r['dominant'] for r in history]"
        )
    longest: dict[str, int] = {}
    dominated: dict[str, int] = {}
    lengths: list[int] = []
    current, run = None, 0
    for name in [*dominant, None]:
        if name is not None and name == current:
            run += 1
            continue
        if current is not None:
            longest[current] = max(longest.get(current, 0), run)
            dominated[current] = dominated.get(current, 0) + run
            lengths.append(run)
        current, run = name, 1
    mean = sum(lengths) / len(lengths) if lengths else 0.0
    return Streaks(longest, mean, len(lengths), dominated)


def _records(source: Records) -> list[dict[str, Any]]:
    if isinstance(source, str | os.PathLike):
        return History.from_jsonl(source).records
    return list(source)


def domination(source: Records) -> Streaks:
    """Streak statistics from a ``History``, a list of records, or a ``metrics.jsonl`` path.

    Steps without gradient norms (fixed budgets without ``track_domination``) are skipped.
    """
    return streaks(r.get("dominant") for r in _records(source))


def trajectory(source: Records, key: str) -> dict[str, list[float]]:
    """A per-player field over steps, e.g. ``trajectory(history, "eps")`` or ``"gamma"``.

    Returns:
        ``{player: [value at step 0, value at step 1, ...]}`` (steps without the field skipped).

    Examples:
        >>> trajectory([{"gamma": {"linf": 1.0, "l2": 0.0}}, {"gamma": {"linf": 0.5, "l2": 0.5}}],
        ...            "gamma")
        {'linf': [1.0, 0.5], 'l2': [0.0, 0.5]}
    """
    out: dict[str, list[float]] = {}
    records = list(_records(source))
    if records and not any(key in r for r in records):
        raise ValueError(
            f"key {key!r} is in no record; per-player keys: eps, alpha, gamma, player_loss, "
            "grad_norm"
        )
    for r in records:
        values = r.get(key)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"key {key!r} is not a per-player field (got {type(values).__name__})")
        for name, v in values.items():
            out.setdefault(name, []).append(v)
    return out
