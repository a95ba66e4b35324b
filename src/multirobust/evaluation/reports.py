"""``Report``: per-example results of an evaluation, its accuracies, JSON and the paper's table.

A report keeps one boolean per example and threat; ``clean``, ``robust``, ``union`` (All) and
``accuracy`` are derived from them, so reports on the same examples combine exactly
(``combine(a, b)`` or ``a & b``).

Examples:
    >>> r = Report("pgd", torch.tensor([0, 1]), torch.tensor([True, True]),
    ...            {"linf": torch.tensor([True, False])})
    >>> r.union
    0.5
"""

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor


def _share(t: Tensor) -> float:
    """The share of true entries, as an exact Python fraction (no float32 rounding)."""
    return int(t.sum()) / t.numel() if t.numel() else float("nan")


def _bits(t: Tensor) -> list[int]:
    return [int(v) for v in t.tolist()]


def _dump(obj: dict[str, Any], arrays: dict[str, Any]) -> str:
    """JSON with the summary indented and each per-example array on one line."""
    text = json.dumps(obj, indent=2)
    for key, value in arrays.items():
        text = text.replace(json.dumps(f"@{key}@"), json.dumps(value, separators=(",", ":")))
    return text


def _load(source: str | Path) -> dict[str, Any]:
    """A JSON text, or the file it is in; a text cut short names the file and the fix."""
    text, where = source, "the JSON text"
    if isinstance(source, Path) or not source.lstrip().startswith("{"):
        text, where = Path(source).read_text(), f"{os.fspath(source)}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{where} is not complete JSON ({e.msg} at line {e.lineno}): the file was cut short "
            "or edited; write it again with to_json(), or delete it"
        ) from None


@dataclasses.dataclass(frozen=True, eq=False)
class Report:
    """What ``evaluate`` found: clean, per-threat and union ("All") accuracy, per example.

    Attributes:
        suite: the attack suite (``"pgd"``, ``"autoattack"``, ... or ``"pgd+autoattack"``).
        labels: the labels of the evaluated examples, ``[n]``.
        correct_clean: whether each example is classified correctly without attack, ``[n]``.
        correct: per threat name, whether each example is still correct under every attack
            (every restart and iteration) of that threat, ``[n]``; always within the clean ones.
        settings: JSON-able settings of the run (per threat: player, budget, steps, restarts).
        warnings: signs that the evaluation overestimates robustness.

    Examples:
        >>> r = Report("pgd", torch.tensor([0, 1]), torch.tensor([True, True]),
        ...            {"linf": torch.tensor([True, False]), "l2": torch.tensor([False, True])})
        >>> r.accuracy
        {'clean': 1.0, 'linf': 0.5, 'l2': 0.5, 'All': 0.0}
    """

    suite: str
    labels: Int[Tensor, " n"]
    correct_clean: Bool[Tensor, " n"]
    correct: dict[str, Bool[Tensor, " n"]]
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        for key, t in {"clean": self.correct_clean, **self.correct}.items():
            if t.dtype != torch.bool or t.shape != (n,):
                raise ValueError(
                    f"{key} must be a bool tensor of shape [{n}] (one per label), got "
                    f"{t.dtype} {list(t.shape)}"
                )
        if "clean" in self.correct or "All" in self.correct:
            raise ValueError("'clean' and 'All' are reserved names, not threat names")
        clean = self.correct_clean.detach().cpu()
        object.__setattr__(self, "labels", self.labels.detach().cpu())
        object.__setattr__(self, "correct_clean", clean)
        correct = {k: v.detach().cpu() & clean for k, v in self.correct.items()}
        object.__setattr__(self, "correct", correct)
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def n(self) -> int:
        """The number of evaluated examples."""
        return int(self.labels.shape[0])

    @property
    def threats(self) -> tuple[str, ...]:
        """The threat names, in order."""
        return tuple(self.correct)

    @property
    def all_correct(self) -> Bool[Tensor, " n"]:
        """Correct under every attack of every threat (per-example AND; paper Sec. 6.1)."""
        out = self.correct_clean.clone()
        for t in self.correct.values():
            out &= t
        return out

    @property
    def clean(self) -> float:
        """Clean accuracy: the share of examples classified correctly without attack."""
        return _share(self.correct_clean)

    @property
    def robust(self) -> dict[str, float]:
        """Per threat, the share of examples correct under all of its attacks."""
        return {k: _share(v) for k, v in self.correct.items()}

    @property
    def union(self) -> float:
        """The union ("All") robust accuracy."""
        return _share(self.all_correct)

    @property
    def accuracy(self) -> dict[str, float]:
        """The table's rows: ``clean``, each threat, ``All``; shares in [0, 1]."""
        return {"clean": self.clean, **self.robust, "All": self.union}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Report):
            return NotImplemented
        return (
            self.suite == other.suite
            and torch.equal(self.labels, other.labels)
            and torch.equal(self.correct_clean, other.correct_clean)
            and list(self.correct) == list(other.correct)
            and all(torch.equal(v, other.correct[k]) for k, v in self.correct.items())
            and self.settings == other.settings
            and self.warnings == other.warnings
        )

    __hash__ = None  # type: ignore[assignment]

    def __and__(self, other: "Report") -> "Report":
        return combine(self, other)

    def __str__(self) -> str:
        lines = [table({self.suite: self})]
        if self.warnings:  # their text was raised once, as RobustnessWarning, by the evaluation
            n = len(self.warnings)
            lines.append(f"{n} warning{'s' if n > 1 else ''} (RobustnessWarning): report.warnings")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: accuracies, settings, warnings, per-example results as 0/1 lists."""
        return {
            "format": "multirobust.report/1",
            "suite": self.suite,
            "n": self.n,
            "clean": self.clean,
            "robust": self.robust,
            "union": self.union,
            "settings": self.settings,
            "warnings": list(self.warnings),
            "labels": _bits(self.labels),
            "correct_clean": _bits(self.correct_clean),
            "correct": {k: _bits(v) for k, v in self.correct.items()},
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The report as JSON (summary first, each per-example array on one line).

        Args:
            path: if given, the JSON is also written there.

        Examples:
            >>> r = Report("pgd", torch.tensor([3]), torch.tensor([True]),
            ...            {"l2": torch.tensor([True])})
            >>> Report.from_json(r.to_json()) == r
            True
        """
        obj = self.to_dict()
        arrays = {"labels": obj["labels"], "correct_clean": obj["correct_clean"]}
        arrays.update({f"correct/{k}": v for k, v in obj["correct"].items()})
        obj.update(labels="@labels@", correct_clean="@correct_clean@")
        obj["correct"] = {k: f"@correct/{k}@" for k in self.correct}
        text = _dump(obj, arrays)
        if path is not None:
            Path(path).write_text(text)
        return text

    def save(self, path: str | Path) -> None:
        """Write the report as JSON to ``path``."""
        self.to_json(path)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Report":
        """A report from ``to_dict``'s output.

        Raises:
            ValueError: if it is not a multirobust report.
        """
        if d.get("format") != "multirobust.report/1":
            raise ValueError(f"not a multirobust report (format {d.get('format')!r})")
        return cls(
            suite=d["suite"],
            labels=torch.tensor(d["labels"], dtype=torch.long),
            correct_clean=torch.tensor(d["correct_clean"], dtype=torch.bool),
            correct={k: torch.tensor(v, dtype=torch.bool) for k, v in d["correct"].items()},
            settings=d["settings"],
            warnings=tuple(d["warnings"]),
        )

    @classmethod
    def from_json(cls, source: str | Path) -> "Report":
        """A report from ``to_json``'s text, or from a path to such a file."""
        return cls.from_dict(_load(source))

    @classmethod
    def load(cls, path: str | Path) -> "Report":
        """Read a report written by ``save``."""
        return cls.from_dict(_load(Path(path)))


def union_accuracy(correct: Mapping[str, Tensor] | Sequence[Tensor]) -> float:
    """All accuracy: the share of examples correct under every threat (per-example AND).

    Examples:
        >>> union_accuracy({"linf": torch.tensor([1, 1, 0]), "l2": torch.tensor([1, 0, 1])})
        0.3333333333333333
    """
    columns = list(correct.values()) if isinstance(correct, Mapping) else list(correct)
    if not columns:
        raise ValueError("union_accuracy needs at least one threat's per-example results")
    return _share(torch.stack([c.bool() for c in columns]).all(dim=0))


def combine(*reports: Report) -> Report:
    """Combine reports on the same examples: per example, correct only if correct in all.

    Threats with the same name are AND-ed (say PGD and AutoAttack on ``linf``); ``All`` is then
    the union accuracy over every attack of every report. ``a & b`` is ``combine(a, b)``.

    Raises:
        ValueError: if no report is given or their labels differ (not the same examples).

    Examples:
        >>> y, c = torch.tensor([0, 1]), torch.tensor([True, True])
        >>> a = Report("pgd", y, c, {"linf": torch.tensor([True, True])})
        >>> b = Report("apgd", y, c, {"linf": torch.tensor([True, False])})
        >>> combine(a, b).robust["linf"]
        0.5
    """
    if not reports:
        raise ValueError("combine needs at least one report")
    first = reports[0]
    correct: dict[str, Tensor] = {}
    clean = first.correct_clean.clone()
    threats: dict[str, Any] = {}
    for r in reports:
        if not torch.equal(r.labels, first.labels):
            raise ValueError(
                "reports must be on the same examples in the same order (their labels differ); "
                "evaluate with the same data and n"
            )
        clean &= r.correct_clean
        for k, v in r.correct.items():
            correct[k] = correct[k] & v if k in correct else v.clone()
        for k, v in r.settings.get("threats", {}).items():
            threats.setdefault(k, v)
    warned = tuple(dict.fromkeys(w for r in reports for w in r.warnings))
    settings = {"threats": threats, "combined": [r.settings for r in reports]}
    suite = "+".join(dict.fromkeys(r.suite for r in reports))
    return Report(suite, first.labels, clean, correct, settings, warned)


def _row_label(name: str, info: Mapping[str, Any] | None) -> str:
    eps = None if info is None else info.get("eps")
    return name if eps is None else f"{name} (eps {eps:g})"


def table(reports: Mapping[str, Report] | Iterable[Report]) -> str:
    """The paper's layout: rows clean, each threat, All; one column per report, in %.

    Args:
        reports: column title -> report, or an iterable of reports of distinct suites (titled
            by their suite).

    Raises:
        ValueError: two reports of one suite in an iterable (name the columns instead).

    Examples:
        >>> r = Report("pgd", torch.tensor([0, 1]), torch.tensor([True, True]),
        ...            {"linf": torch.tensor([True, False])})
        >>> print(table({"MSD": r}))
                  MSD
        clean   100.0
        linf     50.0
        All      50.0
    """
    if not isinstance(reports, Mapping):
        reports = list(reports)
        suites = [r.suite for r in reports]
        repeated = sorted({s for s in suites if suites.count(s) > 1})
        if repeated:
            raise ValueError(
                f"reports: {suites.count(repeated[0])} reports of suite {repeated[0]!r} would "
                "share one column; pass a dict that names the columns, e.g. "
                "table({'MAX': r1, 'MSD': r2})"
            )
        reports = dict(zip(suites, reports, strict=True))
    names = list(dict.fromkeys(k for r in reports.values() for k in r.threats))
    info = {}
    for r in reports.values():
        for k, v in r.settings.get("threats", {}).items():
            info.setdefault(k, v)
    rows = [("clean", "clean"), *((k, _row_label(k, info.get(k))) for k in names), ("All", "All")]
    width = max(len(label) for _, label in rows)
    cols = [max(6, len(title)) for title in reports]
    lines = [" " * width + "".join(f"  {t:>{w}}" for t, w in zip(reports, cols, strict=True))]
    for key, label in rows:
        cells = []
        for r, w in zip(reports.values(), cols, strict=True):
            acc = r.accuracy.get(key)
            cells.append(f"  {'-' if acc is None else f'{100 * acc:.1f}':>{w}}")
        lines.append(f"{label:<{width}}" + "".join(cells))
    return "\n".join(lines)


__all__ = ["Report", "combine", "table", "union_accuracy"]
