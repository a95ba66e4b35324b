"""``History``: the per-step records of a training run, in order."""

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any


class History:
    """The per-step records of a run, in order, with what a report needs.

    Each record is a dict with ``step``, ``epoch``, ``loss``, ``skipped``, ``lr`` (the learning
    rate the step's update used, before the scheduler moved it), and per player (dicts keyed by
    player name) ``eps``, ``alpha`` (what the step's attack used), ``gamma``, ``player_loss`` (or
    ``None``), ``grad_norm`` (or ``None``), plus ``dominant`` (the largest-gradient player, or
    ``None``) and the policy state's other fields after the step (``factor`` per player and
    ``fallbacks`` for the built-in policies).

    Examples:
        >>> h = History([{"loss": 2.0, "skipped": False}, {"loss": 1.5, "skipped": True}])
        >>> h.column("loss"), h.skipped
        ([2.0, 1.5], 1)
    """

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self.records: list[dict[str, Any]] = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.records[i]

    @property
    def skipped(self) -> int:
        """How many steps skipped their update (non-finite loss or gradient)."""
        return sum(bool(r["skipped"]) for r in self.records)

    def column(self, key: str) -> list[Any]:
        """One field of every record, e.g. ``history.column("loss")``."""
        return [r[key] for r in self.records]

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> "History":
        """Read a ``metrics.jsonl`` written by ``Trainer``.

        Raises:
            ValueError: a line is not JSON (a half-written file), naming the file and the line.
        """
        records = []
        with open(path) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(
                        f"{os.fspath(path)}: line {number} is not a JSON record ({e.msg}); the "
                        "file was cut short (a killed run?): delete that line, or the file"
                    ) from None
        return cls(records)
