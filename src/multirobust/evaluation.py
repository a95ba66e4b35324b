"""Robustness evaluation (spec §6): per-threat and union ("All") accuracy, robustness curves.

``evaluate`` attacks a model with each threat, batch by batch, and keeps only per-example
booleans, so a 10 000-image test set never has all its adversarial images in memory at once. The
``Report`` it returns prints as the paper's table and round-trips through JSON; its
per-example results combine across reports (``pgd_report & aa_report``). Before any attack the
model is checked for signs that gradient attacks would overestimate its robustness (softmax
outputs, randomness, zero input gradients); after, a one-step attack checks the multi-step one.

Examples:
    >>> import torch, multirobust as mr
    >>> from multirobust.evaluation import evaluate
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    >>> report = evaluate(model, (x, y), [mr.linf(eps=0.1, alpha=0.05, steps=2)], restarts=1)
    >>> sorted(report.accuracy)
    ['All', 'clean', 'linf']
"""

import dataclasses
import itertools
import json
import math
import os
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn
from torch.utils.data import DataLoader

from multirobust import _checks, debug
from multirobust.attacks import check_batch, frozen_model, make_generator, pgd
from multirobust.autoattack import (
    autoattack_correct,
    autoattack_norm,
    default_seed,
    require_autoattack,
)
from multirobust.players import (
    L1,
    L2,
    Budget,
    Linf,
    Player,
    _check_settings,
    _flat,
    _NormPlayer,
    check_players,
    l1,
    l2,
    linf,
)

SUITES = ("pgd", "pgd-strong", "apgd", "autoattack")
"""The accepted ``suite`` names of ``evaluate`` and ``robustness_curve``."""

PAPER_EVAL_STEPS: dict[str, dict[str, int]] = {
    "mnist": {"linf": 100, "l2": 200, "l1": 100},
    "cifar10": {"linf": 100, "l2": 500, "l1": 100},
    "cifar100": {"linf": 100, "l2": 500, "l1": 100},
}
"""The paper's PGD evaluation iterations per threat (spec §6), by dataset."""

ZERO_GRADIENT_SHARE = 0.01
"""Warn when at least this share of a batch has an all-zero input gradient."""

OVERLOOKED_SHARE = 0.01
"""Warn when a weaker attack breaks more than this share of the examples a stronger one missed."""

# Measured by tests/test_evaluation.py::test_strength_against_apgd (see docs/evaluation.md).
SPARSE_L1_NOTE = (
    "sparse l1 PGD (the paper's l1 attack) is weaker than APGD-L1: on a digits CNN at l1 eps 2.0 "
    "(50 steps, 3 restarts) it left 32.0% of 200 test images robust where APGD-L1 left 13.0%, "
    "a 19-point gap; suite='pgd-strong' (or the threat mr.l1_eval(eps=...)) left 14.0%"
)


class RobustnessWarning(UserWarning):
    """A sign that an evaluation overestimates robustness (gradient masking, a weak attack)."""


# --------------------------------------------------------------------------------------------
# A stronger l_1 attack for evaluation


@dataclasses.dataclass(frozen=True)
class L1Eval(L1):
    """The l_1 player for evaluation: the sparse step with APGD-L1's adaptive sparsity.

    The paper's sparse l_1 step moves a random ``k`` in ``[5, 20]`` coordinates per step; against
    APGD-L1 (Croce & Hein 2021) it overestimates l_1 robustness (see ``docs/evaluation.md``).
    This variant moves, per example, ``k = ceil(nnz(delta) / shrink)`` coordinates, where
    ``nnz(delta)`` counts the coordinates the current perturbation uses (``share`` of all
    coordinates while it uses none): the first steps are dense and the step follows the support
    as the l_1 projection makes it sparse, as APGD-L1's ``topk`` does. It projects exactly onto
    ball ∩ box and takes 100 steps of mass ``eps / 4`` by default.

    Calling it with a new ``eps`` scales ``alpha`` with it: ``mr.l1_eval(eps=2.0).alpha == 0.5``.

    Args:
        share: share of the coordinates moved while ``delta`` is zero (APGD-L1, whose first
            step moves the whole budget, starts at 0.2; with steps of ``eps / 4`` a denser
            start did better on digits).
        shrink: ``k`` is the size of the current support divided by this (APGD-L1: 1.5).
        k_min: the fewest coordinates moved per step.
        k_max: the most coordinates moved per step; ``None``: ``share`` of the coordinates.
        gap: box margin below which a coordinate counts as blocked (``None``: ``alpha / k``).

    Examples:
        >>> l1 = l1_eval(eps=2.0)
        >>> l1.alpha, l1.steps, l1.projection
        (0.5, 100, 'ball-box')
    """

    eps: float = 12.0
    alpha: float = 3.0
    steps: int = 100
    restarts: int = 0
    name: str = "l1"
    k_min: int = 1
    k_max: int | None = None  # type: ignore[assignment]
    gap: float | None = 0.0
    projection: str = "ball-box"
    share: float = 0.5
    shrink: float = 1.5

    def __post_init__(self) -> None:
        _NormPlayer.__post_init__(self)
        _checks.integer_at_least(f"{self.name}.k_min", self.k_min, 1)
        if self.k_max is not None:
            _checks.integer_at_least(f"{self.name}.k_max", self.k_max, self.k_min)
        if not (isinstance(self.share, int | float) and 0 < self.share <= 1):
            raise ValueError(f"{self.name}.share must be in (0, 1], got {self.share!r}")
        if not (isinstance(self.shrink, int | float) and self.shrink >= 1):
            raise ValueError(f"{self.name}.shrink must be a number >= 1, got {self.shrink!r}")
        if self.gap is not None and not (isinstance(self.gap, int | float) and 0 <= self.gap < 0.5):
            raise ValueError(f"{self.name}.gap must be None or in [0, 0.5), got {self.gap!r}")
        _checks.one_of(f"{self.name}.projection", self.projection, ("ball", "ball-box"))

    def __call__(self, **changes: Any) -> "L1Eval":
        """A copy with some settings changed; a new ``eps`` scales ``alpha`` unless it is given."""
        _check_settings(self, changes)
        if "eps" in changes and "alpha" not in changes:
            eps = _checks.positive_finite(f"{self.name}.eps", changes["eps"])
            changes["alpha"] = self.alpha * eps / self.eps
        return dataclasses.replace(self, **changes)

    def check_input(self, x: Tensor) -> None:
        """Reject inputs with fewer coordinates than ``k_min``."""
        n = x[0].numel()
        if self.k_min > n:
            raise ValueError(
                f"{self.name}.k_min={self.k_min} is larger than the {n} coordinates of each input"
            )

    def _k_start(self, n: int) -> int:
        k = max(self.k_min, math.ceil(self.share * n))
        return min(k, n, self.k_max if self.k_max is not None else n)

    def sparsity(self, delta: Float[Tensor, " b *s"]) -> Int[Tensor, " b"]:
        """The number of coordinates of the next step, per example."""
        d = _flat(delta)
        k_start = self._k_start(d.shape[1])
        nnz = (d != 0).sum(dim=1)
        k = torch.where(nnz > 0, torch.ceil(nnz / self.shrink), torch.full_like(nnz, k_start))
        return k.clamp(min(self.k_min, k_start), k_start).long()

    def largest_k(self, n: int) -> int:
        """The most coordinates one step can move: the first step's count."""
        return self._k_start(n)

    def step_k(self, delta: Tensor, generator: torch.Generator | Tensor | None) -> Tensor:
        """The number of coordinates of the next step, per example: ``sparsity(delta)``."""
        return self.sparsity(delta)


l1_eval = L1Eval()
"""The evaluation l_1 player (CIFAR-10 budget 12); ``mr.l1_eval(eps=...)`` for another budget."""


def paper_eval_steps(dataset: str) -> dict[str, int]:
    """The paper's PGD evaluation iterations per threat name, for ``evaluate(steps=...)``.

    Args:
        dataset: ``"mnist"``, ``"cifar10"`` or ``"cifar100"``.

    Returns:
        ``{"linf": ..., "l2": ..., "l1": ...}``: (100, 200, 100) on MNIST, (100, 500, 100) on CIFAR.

    Examples:
        >>> paper_eval_steps("mnist")
        {'linf': 100, 'l2': 200, 'l1': 100}
    """
    key = _checks.one_of("dataset", dataset, tuple(PAPER_EVAL_STEPS))
    return dict(PAPER_EVAL_STEPS[key])


# --------------------------------------------------------------------------------------------
# Reports


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
    text = source
    if isinstance(source, Path) or not source.lstrip().startswith("{"):
        text = Path(source).read_text()
    return json.loads(text)


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
        lines += [f"warning: {w}" for w in self.warnings]
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
        return cls.from_dict(json.loads(Path(path).read_text()))


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


# --------------------------------------------------------------------------------------------
# Data, checks and attacks of one batch


class _NoBar:
    def update(self, _: int) -> None: ...

    def set_description(self, _: str) -> None: ...

    def close(self) -> None: ...


def _progress_bar(progress: bool | None, total: int | None) -> Any:
    if progress is None:
        progress = sys.stderr.isatty()
        if progress:
            try:
                import tqdm
            except ImportError:  # pragma: no cover - tqdm is an optional extra
                progress = False
    if not progress:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError as e:  # pragma: no cover - tqdm is an optional extra
        raise ImportError('progress=True needs tqdm: pip install "multirobust[recipes]"') from e
    return tqdm(total=total, unit="ex", leave=False)


def _loader_size(loader: DataLoader) -> int | None:
    try:
        size = len(loader.sampler)  # type: ignore[arg-type]
    except TypeError:
        return None
    if loader.batch_size is not None and loader.drop_last:
        size = (size // loader.batch_size) * loader.batch_size
    return size


def _loader_batches(loader: DataLoader) -> Iterator[tuple[Tensor, Tensor]]:
    for item in loader:
        pair = isinstance(item, Sequence) and len(item) == 2
        if not pair or not all(isinstance(t, Tensor) for t in item):
            what = f" of length {len(item)}" if isinstance(item, Sequence) else ""
            if pair:
                what = " of " + ", ".join(type(t).__name__ for t in item)
            raise TypeError(
                "each batch of the DataLoader must be a pair (x, y) of tensors, got "
                f"{type(item).__name__}{what}"
            )
        x, y = item
        if y.dim() == 0:
            raise ValueError(
                "each batch of the DataLoader must hold labels y of shape [b], got a single "
                "label (shape []); a DataLoader with batch_size=None yields single examples: "
                "give it a batch_size"
            )
        yield x, y


def _array_like(t: object) -> bool:
    """Whether ``torch.as_tensor`` is the fix for ``t``: an array (``__array__``) or nested lists
    of numbers; not a tensor, and not a batch ``(x, y)`` of a list of batches."""
    if isinstance(t, Tensor):
        return False
    if hasattr(t, "__array__"):
        return True
    return isinstance(t, list) and bool(t) and not isinstance(t[0], Tensor | tuple)


def _batches(
    data: object, n: int | None, batch_size: int
) -> tuple[Iterator[tuple[Tensor, Tensor]], int | None]:
    """Batches of at most ``batch_size`` of the first ``n`` examples, and their number if known."""
    if isinstance(data, DataLoader):
        total = _loader_size(data)
        source: Iterator[tuple[Tensor, Tensor]] = _loader_batches(data)
    elif (
        isinstance(data, tuple | list)
        and len(data) == 2
        and all(isinstance(t, Tensor) for t in data)
    ):
        x, y = data
        if x.dim() == 0 or y.dim() == 0 or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data (x, y) must hold as many inputs as labels, got x {list(x.shape)} and "
                f"y {list(y.shape)}"
            )
        total = int(x.shape[0])
        source = iter([(x, y)])
    elif isinstance(data, tuple | list) and len(data) == 2 and any(map(_array_like, data)):
        name, t = ("x", data[0]) if _array_like(data[0]) else ("y", data[1])
        raise TypeError(
            f"data must be a pair (x, y) of tensors, but {name} is of type {type(t).__name__}; "
            f"convert with torch.as_tensor({name})"
        )
    else:
        raise TypeError(
            "data must be a torch DataLoader of (x, y) batches or a pair (x, y) of tensors, got "
            f"{type(data).__name__}"
        )
    if n is not None:
        _checks.integer_at_least("n", n, 1)
        if total is not None and n > total:
            raise ValueError(f"n={n} is larger than the data, which has {total} examples")
    if total == 0:
        raise ValueError(
            "data is empty (0 examples); pass a DataLoader or a pair (x, y) holding at least "
            "one example"
        )
    limit = n if n is not None else total

    def chunks() -> Iterator[tuple[Tensor, Tensor]]:
        seen = 0
        for x, y in source:
            for i in range(0, x.shape[0], batch_size):
                if limit is not None and seen >= limit:
                    return
                take = batch_size if limit is None else min(batch_size, limit - seen)
                xb, yb = x[i : i + take], y[i : i + take]
                seen += xb.shape[0]
                yield xb, yb
        if n is not None and seen < n:
            raise ValueError(f"n={n} is larger than the data, which ran out after {seen} examples")

    return chunks(), limit


def _model_device(model: nn.Module) -> torch.device:
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def _check_budget(player: Player, eps: float, d: int) -> None:
    """Reject budgets that make no sense for inputs in [0, 1]^d."""
    limits = ((Linf, 1.0, "1 (the whole box)"), (L2, math.sqrt(d), f"sqrt(d) = {math.sqrt(d):.4g}"))
    limits += ((L1, float(d), f"d = {d}"),)
    for cls, limit, what in limits:
        if isinstance(player, cls) and eps >= limit:
            raise ValueError(
                f"threat {player.name!r}: eps={eps:g} is >= {what}, the diameter of the [0, 1] box "
                f"of these {d}-dimensional inputs in its norm, so every input can reach any other; "
                "pass a smaller eps"
            )


def _model_checks(model: nn.Module, x: Tensor, y: Tensor) -> list[str]:
    """AutoAttack-style checks (checks.py) on one batch: softmax, randomness, zero gradients."""
    found = []
    with torch.no_grad():
        a, b = model(x).float(), model(x).float()
    if bool((a >= -1e-5).all() and (a <= 1 + 1e-5).all()) and bool(
        ((a.sum(dim=1) - 1).abs() < 1e-4).all()
    ):
        found.append(
            "the model's outputs are probabilities (each row sums to 1): attacks need logits, and "
            "a softmax output saturates their gradients; remove the final softmax"
        )
    if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        diff = float((a - b).abs().max())
        found.append(
            f"the model is not deterministic in eval mode (two forward passes differ by up to "
            f"{diff:.3g}): a randomised defence needs attacks with expectation over "
            "transformation, and these accuracies are likely overestimated"
        )
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr).float(), y, reduction="sum")
        if loss.requires_grad:
            (g,) = torch.autograd.grad(loss, xr, allow_unused=True)
        else:
            g = None
    zero = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    if g is not None:
        zero = _flat(g).abs().sum(dim=1) == 0
    count = int(zero.sum())
    if count and count >= ZERO_GRADIENT_SHARE * x.shape[0]:
        found.append(
            f"the input gradient of the loss is exactly zero for {count} of {x.shape[0]} examples "
            "at the clean input (a non-differentiable model, e.g. rounding or argmax, or a "
            "saturated softmax): gradient attacks cannot move from there and robust accuracy "
            "may be overestimated"
        )
    return found


class _RandomStart:
    """``player`` whose unperturbed state is a random start: one restart as a run of its own."""

    def __init__(
        self, player: Player, eps: Budget, generator: torch.Generator, restart: int
    ) -> None:
        self.player, self._eps, self._generator, self._restart = player, eps, generator, restart
        self.name, self.eps, self.alpha = player.name, player.eps, player.alpha
        self.steps, self.restarts = player.steps, player.restarts
        for hook in ("check_input", "draw"):
            if getattr(player, hook, None) is not None:
                setattr(self, hook, getattr(player, hook))

    def zero(self, x: Tensor) -> Tensor:
        delta = self.player.init(x, self._eps, self._generator)
        # run_pgd checks the random starts of its own restarts only, not a run's start.
        where = f"the random start of restart {self._restart}"
        debug.check_step(self.player, x, delta, self._eps, where, made_by="init")
        return delta

    def init(self, x: Tensor, eps: Budget, generator: torch.Generator | None) -> Tensor:
        return self.player.init(x, eps, generator)

    def ascend(
        self,
        x: Tensor,
        delta: Tensor,
        grad: Tensor,
        alpha: Budget,
        g: torch.Generator | Tensor | None,
    ) -> Tensor:
        return self.player.ascend(x, delta, grad, alpha, g)

    def project(self, x: Tensor, delta: Tensor, eps: Budget) -> Tensor:
        return self.player.project(x, delta, eps)

    def size(self, delta: Tensor) -> Tensor:
        return self.player.size(delta)

    def apply(self, x: Tensor, delta: Tensor) -> Tensor:
        return self.player.apply(x, delta)


def _pgd_correct(
    model: nn.Module,
    player: Player,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    restarts: int,
    generator: torch.Generator,
) -> Tensor:
    """Still correct after the run from zero and every restart (first success, spec §6).

    Each restart runs only on the examples no earlier run broke, as AutoAttack does; per example
    this is the same attack as ``pgd(player, steps, restarts, keep="first-success")``.
    """
    result = pgd(player, steps, 0, keep="first-success").run(
        model, x, y, eps=eps, alpha=alpha, generator=generator
    )
    correct = ~result.success
    del result
    for restart in range(1, restarts + 1):
        idx = correct.nonzero().flatten()
        if idx.numel() == 0:
            break
        start = _RandomStart(player, eps, generator, restart)
        result = pgd(start, steps, 0, keep="first-success").run(  # type: ignore[arg-type]
            model, x[idx], y[idx], eps=eps, alpha=alpha, generator=generator
        )
        correct[idx] = ~result.success
        del result
    return correct


@dataclasses.dataclass(frozen=True)
class _Task:
    """One attack of the run: a result key, its player, its budget and step size."""

    key: str
    player: Player
    eps: float
    alpha: float
    steps: int

    @property
    def label(self) -> str:
        return f"{self.player.name} (eps {self.eps:g})"


def _describe(player: Player, suite: str, eps: float, steps: int, restarts: int) -> dict[str, Any]:
    kind = type(player).__name__
    info: dict[str, Any] = {"player": repr(player), "kind": kind, "eps": eps}
    if suite in ("pgd", "pgd-strong"):
        info.update(attack="pgd first-success", steps=steps, restarts=restarts)
    else:
        version = "standard" if suite == "autoattack" else "apgd-ce + apgd-t"
        info.update(attack=f"AutoAttack {autoattack_norm(player)} {version}")
    return info


def _validate(
    model: object,
    threats: object,
    suite: object,
    restarts: object,
    steps: object,
    batch_size: object,
    seed: object,
) -> tuple[Player, ...]:
    _checks.seed("seed", seed)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _checks.one_of("suite", suite, SUITES)
    _checks.integer_at_least("restarts", restarts, 0)
    _checks.integer_at_least("batch_size", batch_size, 1)
    if isinstance(threats, Player):
        threats = (threats,)
    if not isinstance(threats, Sequence) or isinstance(threats, str):
        raise TypeError(f"threats must be a sequence of players, got {type(threats).__name__}")
    threats = check_players(tuple(threats), role="threat")
    names = [p.name for p in threats]
    if {"clean", "All"} & set(names):
        raise ValueError(
            f"'clean' and 'All' are reserved report rows, not threat names, got {names}; rename "
            "with e.g. mr.linf(name='linf-small')"
        )
    if steps is not None and not isinstance(steps, Mapping):
        _checks.integer_at_least("steps", steps, 1)
    if isinstance(steps, Mapping):
        unknown = set(steps) - set(names)
        if unknown:
            raise ValueError(f"steps names unknown threats {sorted(unknown)}; threats: {names}")
        for k, v in steps.items():
            _checks.integer_at_least(f"steps[{k!r}]", v, 1)
    threats = tuple(threats)
    if suite == "pgd-strong":
        threats = tuple(
            l1_eval(eps=p.eps, name=p.name)
            if isinstance(p, L1) and not isinstance(p, L1Eval)
            else p
            for p in threats
        )
    if suite in ("apgd", "autoattack"):
        for p in threats:
            autoattack_norm(p)
        require_autoattack()
    return threats


def _run(
    model: nn.Module,
    data: object,
    tasks: list[_Task],
    *,
    suite: str,
    restarts: int,
    n: int | None,
    batch_size: int,
    seed: int | None,
    progress: bool | None,
    checks: bool,
) -> tuple[Tensor, Tensor, dict[str, Tensor], list[str]]:
    """Attack batch by batch; per task key, whether each example stays correct."""
    batches, total = _batches(data, n, batch_size)
    first = next(batches, None)
    if first is None:
        raise ValueError(
            "data yielded no examples; pass a DataLoader or a pair (x, y) holding at least one "
            "example (a one-shot iterator is spent after one pass)"
        )
    device = _model_device(model)
    x0, y0 = first[0].to(device), first[1].to(device)
    players = tuple({id(t.player): t.player for t in tasks}.values())  # players may not hash
    check_batch(model, x0, y0, players)
    d = x0[0].numel()
    for t in tasks:
        _check_budget(t.player, t.eps, d)
    found: list[str] = []
    if checks:
        with frozen_model(model):
            found += _model_checks(model, x0, y0)
    pgd_suite = suite in ("pgd", "pgd-strong")
    generators = {
        t.key: make_generator(device, None if seed is None else seed + i)
        for i, t in enumerate(tasks)
    }
    check_generator = make_generator(device, None if seed is None else seed + len(tasks))
    aa_seed = default_seed(seed)
    labels, clean, correct = [], [], {t.key: [] for t in tasks}
    overlooked = dict.fromkeys((t.key for t in tasks), 0)
    bar = _progress_bar(progress, None if total is None else total * len(tasks))
    try:
        with frozen_model(model):
            for x, y in itertools.chain([first], batches):
                x, y = x.to(device), y.to(device)
                check_batch(model, x, y, players)
                with torch.no_grad():
                    ok_clean = model(x).argmax(dim=1) == y
                labels.append(y.cpu())
                clean.append(ok_clean.cpu())
                for t in tasks:
                    bar.set_description(f"{suite} {t.key}")
                    if pgd_suite:
                        ok = _pgd_correct(
                            model,
                            t.player,
                            x,
                            y,
                            eps=t.eps,
                            alpha=t.alpha,
                            steps=t.steps,
                            restarts=restarts,
                            generator=generators[t.key],
                        )
                        if checks:
                            weak = pgd(t.player, 1, 0, keep="first-success").run(
                                model, x, y, eps=t.eps, alpha=t.eps, generator=check_generator
                            )
                            overlooked[t.key] += int((ok & weak.success).sum())
                    else:
                        version = "standard" if suite == "autoattack" else "apgd"
                        ok, messages = autoattack_correct(
                            model,
                            x,
                            y,
                            norm=autoattack_norm(t.player),
                            eps=t.eps,
                            version=version,
                            seed=aa_seed,
                        )
                        found += [m for m in messages if m not in found]
                    correct[t.key].append((ok & ok_clean).cpu())
                    bar.update(int(y.shape[0]))
    finally:
        bar.close()
    y_all = torch.cat(labels)
    count = y_all.shape[0]
    for t in tasks:
        missed = overlooked[t.key]
        if missed and missed >= max(2, OVERLOOKED_SHARE * count):
            found.append(
                f"{t.label}: a single step of size eps broke {missed} of {count} examples that "
                f"{t.steps}-step PGD with {restarts} restarts left correct (a weaker attack beat "
                "a stronger one): signs of gradient masking, or of too few steps or too small a "
                "step size to reach the budget; robust accuracy is overestimated"
            )
    result = {k: torch.cat(v) for k, v in correct.items()}
    return y_all, torch.cat(clean), result, found


def _warn(messages: list[str]) -> tuple[str, ...]:
    for m in messages:
        warnings.warn(m, RobustnessWarning, stacklevel=3)
    return tuple(messages)


def evaluate(
    model: nn.Module,
    data: Any,
    threats: Any = (linf, l2, l1),
    suite: str = "pgd",
    *,
    restarts: int = 10,
    steps: int | Mapping[str, int] | None = None,
    n: int | None = None,
    batch_size: int = 500,
    seed: int | None = 0,
    progress: bool | None = None,
    checks: bool = True,
) -> Report:
    """Clean, per-threat and union ("All") accuracy of ``model`` on ``data`` (spec §6).

    Suites:
        - ``"pgd"``: the paper's protocol. Per threat, PGD from zero and ``restarts`` random
          restarts; an example is broken as soon as any iteration of any run misclassifies it.
        - ``"pgd-strong"``: ``"pgd"`` with every sparse l_1 threat replaced by ``l1_eval``
          at its budget, which comes within 1 point of APGD-L1 where the sparse step does not.
        - ``"autoattack"``: AutoAttack's standard version, one run per threat (l_inf, l_2, l_1).
        - ``"apgd"``: only its APGD-CE and APGD-T, with the standard settings (E-AT, RAMP).

    Before any attack the first batch is checked for softmax outputs, randomness and zero input
    gradients; PGD suites also try a single step of size eps, which must not break what PGD
    missed. What these checks find is in ``report.warnings`` and warned as RobustnessWarning.

    Args:
        model: a classifier of inputs in [0, 1] returning logits; left exactly as found.
        data: a DataLoader of ``(x, y)`` batches or a pair ``(x, y)``; moved to the model's device.
        threats: the players (budgets included); names must be unique.
        suite: one of ``"pgd"``, ``"pgd-strong"``, ``"apgd"``, ``"autoattack"``.
        restarts: random restarts after the run from zero (PGD suites; the paper: 10).
        steps: PGD iterations: ``None`` (each player's own ``steps``), one int, or a dict
            name -> int (see ``paper_eval_steps``); players not in the dict keep theirs.
        n: evaluate the first ``n`` examples only.
        batch_size: the most examples attacked at once (larger loader batches are split).
        seed: seed of the random starts (and AutoAttack's); ``None`` draws one from torch.
        progress: a tqdm bar over batches and threats; ``None``: only on a terminal.
        checks: run the masking checks.

    Returns:
        A ``Report``.

    Raises:
        ValueError, TypeError: for bad arguments or data, before any attack.
        ImportError: for the AutoAttack suites without pyautoattack.
    """
    players = _validate(model, threats, suite, restarts, steps, batch_size, seed)
    tasks = []
    for p in players:
        s = steps.get(p.name, p.steps) if isinstance(steps, Mapping) else steps or p.steps
        tasks.append(_Task(p.name, p, float(p.eps), float(p.alpha), int(s)))
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
    )
    if suite == "pgd" and any(isinstance(p, L1) and not isinstance(p, L1Eval) for p in players):
        found.append(SPARSE_L1_NOTE)
    settings = {
        "threats": {t.key: _describe(t.player, suite, t.eps, t.steps, restarts) for t in tasks},
        "restarts": restarts,
        "seed": seed,
        "batch_size": batch_size,
        "n": int(labels.shape[0]),
    }
    return Report(suite, labels, clean, correct, settings, _warn(found))


# --------------------------------------------------------------------------------------------
# Robustness curves


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


def _matplotlib() -> tuple[Any, Any]:
    """matplotlib's Agg canvas and Figure, or an ImportError that says how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is an optional extra
        raise ImportError(
            'plotting curves needs matplotlib: pip install matplotlib (or "multirobust[recipes]")'
        ) from e
    return FigureCanvasAgg, Figure


def plot_curves(
    curves: Curve | Sequence[Curve] | Mapping[str, Curve | Sequence[Curve]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Plot robustness curves as a PNG: one panel per threat, one line per model (paper Fig. 6).

    Args:
        curves: a curve, curves, or label -> curve(s) to compare models (say "MAX", "MSD").
        path: where to write the PNG.
        title: the figure's title.

    Returns:
        The path written.

    Raises:
        ImportError: without matplotlib (``pip install "multirobust[recipes]"``).
    """
    FigureCanvasAgg, Figure = _matplotlib()
    if isinstance(curves, Curve):
        curves = [curves]
    if not isinstance(curves, Mapping):
        curves = {"": curves}
    groups = {k: [v] if isinstance(v, Curve) else list(v) for k, v in curves.items()}
    threats = list(dict.fromkeys(c.threat for cs in groups.values() for c in cs))
    if not threats:
        raise ValueError("no curves to plot")
    fig = Figure(figsize=(4 * len(threats), 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(threats), squeeze=False)[0]
    for ax, name in zip(axes, threats, strict=True):
        for label, cs in groups.items():
            for c in cs:
                if c.threat != name:
                    continue
                xs = [0.0, *c.budgets]
                ys = [100 * c.clean_accuracy, *(100 * a for a in c.accuracy)]
                ax.plot(xs, ys, marker="o", label=label or c.suite)
        ax.set_title(name)
        ax.set_xlabel("eps")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png", dpi=120)
    return path
