"""``evaluate``: per-threat and union ("All") accuracy under one attack suite.

``evaluate`` attacks a model with each threat, batch by batch, and keeps only per-example
booleans, so a 10 000-image test set never has all its adversarial images in memory at once.
Before any attack the model is checked for signs that gradient attacks would overestimate its
robustness (``masking.py``); after, a one-step attack checks the multi-step one.

Examples:
    >>> import torch, multirobust as mr
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    >>> report = evaluate(model, (x, y), [mr.linf(eps=0.1, alpha=0.05, steps=2)], restarts=1)
    >>> sorted(report.accuracy)
    ['All', 'clean', 'linf']
"""

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multirobust import _checks
from multirobust.attacks import check_batch, frozen_model, make_generator, pgd
from multirobust.evaluation.autoattack import (
    autoattack_correct,
    autoattack_norm,
    default_seed,
    require_autoattack,
)
from multirobust.evaluation.batches import _batches, _model_device, _progress_bar
from multirobust.evaluation.masking import (
    OVERLOOKED_SHARE,
    SAMPLE,
    Crosscheck,
    _model_checks,
    _warn,
)
from multirobust.evaluation.protocol import _pgd_correct
from multirobust.evaluation.reports import Report
from multirobust.players import (
    L1,
    L1Eval,
    Player,
    check_budget,
    check_players,
    l1,
    l1_eval,
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
"""The paper's PGD evaluation iterations per threat, by dataset (see ``docs/evaluation.md``)."""

# Measured by tests/test_evaluation.py::test_strength_against_apgd (see docs/evaluation.md).
SPARSE_L1_NOTE = (
    "l1: the paper's sparse l1 PGD is weaker than APGD-L1 (a 19-point gap on a digits CNN, "
    "docs/evaluation.md); for a strong l1 evaluation pass suite='pgd-strong'"
)


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
    counts: dict[str, Any] | None = None,
) -> tuple[Tensor, Tensor, dict[str, Tensor], list[str]]:
    """Attack batch by batch; per task key, whether each example stays correct.

    ``counts``, if given, receives per task key what the sampled masking checks counted.
    """
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
        check_budget(t.player, t.eps, d)
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
    # The sample of the descent check and the DLR cross-check: seeded, on the CPU.
    sample_generator = make_generator(
        torch.device("cpu"), None if seed is None else seed + len(tasks) + 2
    )
    cross_generator = make_generator(device, None if seed is None else seed + len(tasks) + 1)
    aa_seed = default_seed(seed)
    labels, clean, correct = [], [], {t.key: [] for t in tasks}
    overlooked = dict.fromkeys((t.key for t in tasks), 0)
    crosschecks = {t.key: Crosscheck(t.label, t.steps, restarts) for t in tasks}
    sampled = 0
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
                take = min(SAMPLE - sampled, int(y.shape[0])) if checks and pgd_suite else 0
                sample = torch.randperm(int(y.shape[0]), generator=sample_generator)[:take]
                sample = sample.sort().values.to(device)
                sampled += take
                sample = sample[ok_clean[sample]]
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
                        if sample.numel():
                            broken = crosschecks[t.key].run(
                                model,
                                t.player,
                                x[sample],
                                y[sample],
                                ok[sample],
                                eps=t.eps,
                                alpha=t.alpha,
                                generator=cross_generator,
                            )
                            ok[sample[broken]] = False  # broken by any attack: not robust
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
    for t in tasks:
        found += crosschecks[t.key].messages()
        if counts is not None and sampled:
            counts[t.key] = crosschecks[t.key].counts()
    result = {k: torch.cat(v) for k, v in correct.items()}
    return y_all, torch.cat(clean), result, found


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
    """Clean, per-threat and union ("All") accuracy of ``model`` on ``data`` (paper Sec. 6.1).

    Suites:
        - ``"pgd"``: the paper's protocol. Per threat, PGD from zero and ``restarts`` random
          restarts; an example is broken as soon as any iteration of any run misclassifies it.
        - ``"pgd-strong"``: ``"pgd"`` with every sparse l_1 threat replaced by ``l1_eval``
          at its budget, which comes within 1 point of APGD-L1 where the sparse step does not.
        - ``"autoattack"``: AutoAttack's standard version, one run per threat (l_inf, l_2, l_1).
        - ``"apgd"``: only its APGD-CE and APGD-T, with the standard settings (E-AT, RAMP).

    Before any attack the first batch is checked for softmax outputs, randomness and zero input
    gradients; PGD suites also try a single step of size eps, which must not break what PGD
    missed, and on a seeded sample of at most 64 examples per threat check that a small ascent
    step raises the loss and cross-check with PGD on the scale-invariant DLR loss: what the
    cross-check breaks counts as broken (``masking.py``, ``docs/evaluation.md``). What these
    checks find is in ``report.warnings`` and warned as RobustnessWarning.

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
        checks: run the masking checks (``False``: neither their warnings nor the examples the
            DLR cross-check breaks).

    Returns:
        A ``Report``.

    Raises:
        ValueError, TypeError: for bad arguments or data, before any attack.
        ImportError: for the AutoAttack suites without pyautoattack.
    """
    players = _validate(model, threats, suite, restarts, steps, batch_size, seed)
    counts: dict[str, Any] = {}
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
        counts=counts,
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
    if counts:
        settings["masking_checks"] = {"sample": SAMPLE, "counts": counts}
    return Report(suite, labels, clean, correct, settings, _warn(found))


__all__ = ["PAPER_EVAL_STEPS", "SUITES", "evaluate", "paper_eval_steps"]
