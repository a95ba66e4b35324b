"""``Curve`` and ``robustness_curve``: accuracy of one threat over a grid of budgets (Fig. 6).

Examples:
    >>> c = Curve("l2", "pgd", (0.5,), torch.tensor([0]), torch.tensor([True]),
    ...           torch.tensor([[False]]))
    >>> c.accuracy, c.clean_accuracy
    ((0.0,), 1.0)
"""

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor, nn

from multirobust import _checks
from multirobust.evaluation.masking import OVERLOOKED_SHARE, SAMPLE, _warn
from multirobust.evaluation.reports import _bits, _dump, _load, _share
from multirobust.evaluation.suites import _describe, _run, _Task, _validate
from multirobust.players import Player


@dataclasses.dataclass(frozen=True, eq=False)
class Curve:
    """Accuracy of one threat over a grid of budgets (paper Fig. 6).

    Attributes:
        threat: the threat's name.
        suite: the attack suite.
        budgets: the budgets, ascending.
        labels: the labels of the examples, ``[n]``.
        clean: clean correctness per example, ``[n]``.
        correct: correctness per budget and example, ``[budgets, n]``.
        settings: JSON-able settings of the run.
        warnings: signs that the curve overestimates robustness.

    Examples:
        >>> c = Curve("l2", "pgd", (0.5, 1.0), torch.tensor([0, 1]), torch.tensor([True, True]),
        ...           torch.tensor([[True, False], [False, False]]))
        >>> c.accuracy
        (0.5, 0.0)
    """

    threat: str
    suite: str
    budgets: tuple[float, ...]
    labels: Int[Tensor, " n"]
    clean: Bool[Tensor, " n"]
    correct: Bool[Tensor, "k n"]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.correct.shape != (len(self.budgets), self.labels.shape[0]):
            raise ValueError(
                f"correct must have shape [budgets, n] = [{len(self.budgets)}, "
                f"{self.labels.shape[0]}], got {list(self.correct.shape)}"
            )
        object.__setattr__(self, "budgets", tuple(float(b) for b in self.budgets))
        object.__setattr__(self, "labels", self.labels.detach().cpu())
        object.__setattr__(self, "clean", self.clean.detach().cpu())
        object.__setattr__(self, "correct", self.correct.detach().cpu() & self.clean)
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def accuracy(self) -> tuple[float, ...]:
        """Robust accuracy at each budget."""
        return tuple(_share(v) for v in self.correct)

    @property
    def clean_accuracy(self) -> float:
        """Accuracy without attack (budget 0)."""
        return _share(self.clean)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Curve):
            return NotImplemented
        return (
            (self.threat, self.suite, self.budgets) == (other.threat, other.suite, other.budgets)
            and torch.equal(self.labels, other.labels)
            and torch.equal(self.clean, other.clean)
            and torch.equal(self.correct, other.correct)
            and self.settings == other.settings
            and self.warnings == other.warnings
        )

    __hash__ = None  # type: ignore[assignment]

    def __str__(self) -> str:
        rows = [("0", self.clean_accuracy)]
        rows += [(f"{b:g}", a) for b, a in zip(self.budgets, self.accuracy, strict=True)]
        lines = [f"{self.threat} ({self.suite}): eps -> accuracy %"]
        lines += [f"  {b:>8}  {100 * a:5.1f}" for b, a in rows]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_json(self, path: str | Path | None = None) -> str:
        """The curve as JSON; written to ``path`` if given."""
        arrays = {"labels": _bits(self.labels), "clean": _bits(self.clean)}
        arrays.update({f"correct/{i}": _bits(v) for i, v in enumerate(self.correct)})
        obj = {
            "format": "multirobust.curve/1",
            "threat": self.threat,
            "suite": self.suite,
            "n": int(self.labels.shape[0]),
            "budgets": list(self.budgets),
            "accuracy": list(self.accuracy),
            "clean_accuracy": self.clean_accuracy,
            "settings": self.settings,
            "warnings": list(self.warnings),
            "labels": "@labels@",
            "clean": "@clean@",
            "correct": [f"@correct/{i}@" for i in range(len(self.budgets))],
        }
        text = _dump(obj, arrays)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> "Curve":
        """A curve from ``to_json``'s text or a path to it."""
        d = _load(source)
        if d.get("format") != "multirobust.curve/1":
            raise ValueError(f"not a multirobust curve (format {d.get('format')!r})")
        n = len(d["labels"])
        correct = torch.tensor(d["correct"], dtype=torch.bool).reshape(len(d["budgets"]), n)
        return cls(
            threat=d["threat"],
            suite=d["suite"],
            budgets=tuple(d["budgets"]),
            labels=torch.tensor(d["labels"], dtype=torch.long),
            clean=torch.tensor(d["clean"], dtype=torch.bool),
            correct=correct,
            settings=d["settings"],
            warnings=tuple(d["warnings"]),
        )


def robustness_curve(
    model: nn.Module,
    data: Any,
    threat: Player,
    budgets: Sequence[float],
    suite: str = "pgd",
    *,
    restarts: int = 10,
    steps: int | None = None,
    n: int | None = None,
    batch_size: int = 500,
    seed: int | None = 0,
    progress: bool | None = None,
    checks: bool = True,
    path: str | Path | None = None,
) -> Curve:
    """Robust accuracy of one threat at each budget of a grid (paper Fig. 6).

    Each budget runs the suite's attack with the threat's settings; PGD's step size scales with
    the budget (``alpha * budget / eps``). Accuracy should not rise with the budget: where larger
    balls leave examples correct that smaller ones broke, the curve warns (gradient masking).

    Args:
        model: as ``evaluate``.
        data: as ``evaluate``.
        threat: one player; its ``eps`` is replaced by each budget.
        budgets: the grid, each > 0.
        suite: as ``evaluate``.
        restarts: as ``evaluate``.
        steps: PGD iterations (``None``: the player's own).
        n: as ``evaluate``.
        batch_size: as ``evaluate``.
        seed: as ``evaluate``.
        progress: as ``evaluate``.
        checks: as ``evaluate``.
        path: if given, the curve is written to ``path`` with suffix ``.json`` and plotted to
            ``.png`` (needs matplotlib); missing folders are made (a path that cannot be
            written is refused before the attacks).

    Returns:
        A ``Curve``.

    Examples:
        >>> import torch, multirobust as mr
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
        >>> c = robustness_curve(model, (x, y), mr.l2(alpha=0.5, steps=3), [0.1, 0.5], restarts=0)
        >>> c.budgets
        (0.1, 0.5)
    """
    if not isinstance(threat, Player):
        raise TypeError(
            "threat must be one player, e.g. mr.l2(alpha=0.1, steps=50), got "
            f"{type(threat).__name__}; call robustness_curve once per threat"
        )
    if steps is not None:  # one threat: one int (evaluate's per-threat dict makes no sense)
        _checks.integer_at_least("steps", steps, 1)
    (player,) = _validate(model, [threat], suite, restarts, steps, batch_size, seed)
    from multirobust.evaluation.plotting import _matplotlib, plot_curves  # plotting imports Curve

    if path is not None:  # before the attacks, which may take hours
        path = Path(path)
        _matplotlib()
        _check_writable_folder(path)
    if isinstance(budgets, str | bytes) or not isinstance(budgets, Sequence) or not budgets:
        raise ValueError(f"budgets must be a non-empty sequence of numbers > 0, got {budgets!r}")
    grid = sorted(_checks.positive_finite(f"budgets[{i}]", b) for i, b in enumerate(budgets))
    s = player.steps if steps is None else steps
    tasks = [
        _Task(str(i), player, b, float(player.alpha) * b / float(player.eps), int(s))
        for i, b in enumerate(grid)
    ]
    counts: dict[str, Any] = {}
    labels, clean, correct, found = _run(
        model,
        data,
        tasks,
        suite=suite,
        restarts=restarts,
        n=n,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        checks=checks,
        counts=counts,
    )
    table_ = torch.stack([correct[t.key] for t in tasks])
    # A larger ball contains a smaller one: correct at a larger budget but not at a smaller one.
    reversed_ = (table_[1:] & ~table_[:-1]).any(dim=0)
    count, total = int(reversed_.sum()), int(labels.shape[0])
    if count and count >= max(2, OVERLOOKED_SHARE * total):
        found.append(
            f"{player.name}: {count} of {total} examples are correct at a larger budget but "
            "broken at a smaller one (accuracy should not rise with the budget): signs of "
            "gradient masking or too few steps"
        )
    settings = {
        **_describe(player, suite, float(player.eps), int(s), restarts),
        "alpha_scales_with_budget": suite in ("pgd", "pgd-strong"),
        "restarts": restarts,
        "seed": seed,
        "n": total,
    }
    settings.pop("eps")
    if counts:
        settings["masking_checks"] = {"sample": SAMPLE, "counts": counts}
    curve = Curve(player.name, suite, tuple(grid), labels, clean, table_, settings, _warn(found))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        curve.to_json(path.with_suffix(".json"))
        plot_curves(curve, path.with_suffix(".png"))
    return curve


def _check_writable_folder(path: Path) -> None:
    """Refuse a ``path`` whose folder cannot be made or written: its nearest existing ancestor
    must be a writable folder (missing folders are made when the results are written)."""
    folder = path.parent.absolute()
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(
            f"path={str(path)!r} cannot be written: {folder} is not a writable folder; pass a "
            "path under a folder you can write to"
        )


__all__ = ["Curve", "robustness_curve"]
