"""Budget policies: the ``BudgetPolicy`` protocol, ``fixed`` (the paper's baselines) and
``adaptive`` (the paper's AdaptiveBudget).

A policy wraps an aggregator into a *game*. Like optax's ``GradientTransformation`` it is a pair of
pure functions, ``init`` and ``update``, over a state that holds the current budgets and step sizes
as tensors ``[K]``, so changing them never retraces a compiled function; it declares what it needs
measured as a ``Measure``. The adaptive rule (paper Alg. 2, Sec. 4):

    eps_p = eps0_p * clamp(||g_p|| / median_q ||g_q||, lo, hi)

always relative to the base budgets ``eps0_p``, never compounding.
"""

import dataclasses
import math
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from jaxtyping import Float, Int
from torch import Tensor

from multirobust import _checks
from multirobust.aggregators import Aggregator, base_budgets, check_aggregator
from multirobust.gradients import NORMS
from multirobust.measure import Measure, Measurements, probe_step_sizes

__all__ = [
    "TIMINGS",
    "Adaptive",
    "BudgetPolicy",
    "BudgetState",
    "Fixed",
    "adaptive",
    "adaptive_factors",
    "fixed",
    "probe_step_sizes",
]

TIMINGS = ("same-batch", "lagged")


class BudgetState(NamedTuple):
    """The budgets in force and how they were set: the state of ``fixed`` and ``adaptive``.

    Attributes:
        eps: budget per player, ``[K]``.
        alpha: step size per player, ``[K]``.
        factor: ``eps / eps0`` per player, ``[K]``.
        fallbacks: how many updates fell back to the base budgets (zero median, non-finite
            norm), a 0-d int64 tensor.
    """

    eps: Float[Tensor, " k"]
    alpha: Float[Tensor, " k"]
    factor: Float[Tensor, " k"]
    fallbacks: Int[Tensor, ""]


@runtime_checkable
class BudgetPolicy(Protocol):
    """How the players' budgets change during training; what a ``Trainer`` plays.

    Implement these members to define a new policy (``docs/guide/new-policy.md``). The state is a
    ``NamedTuple`` of tensors with at least ``eps`` and ``alpha`` (``[K]`` each: the budgets and
    step sizes the aggregator uses next); the Trainer checkpoints it, restores it exactly, and
    under DistributedDataParallel averages the measurements over ranks before ``update``, so every
    rank computes the same state.

    Attributes:
        aggregator: how the players bargain.
        measure: what ``update`` needs measured on each batch, and when; ``None``: nothing
            (``update`` is then never called).
    """

    aggregator: Aggregator
    measure: Measure | None

    def init(self, device: torch.device | None = None) -> Any:
        """The state before the first batch."""
        ...

    def update(self, state: Any, measurements: Measurements) -> Any:
        """The next state, from this batch's measurements."""
        ...


POLICY_MEMBERS = ("aggregator", "measure", "init", "update")
"""Every member of ``BudgetPolicy``."""


def adaptive_factors(
    norms: Float[Tensor, " k"], clamp: tuple[float, float] | None = (0.5, 2.0)
) -> tuple[Float[Tensor, " k"], bool]:
    """The AdaptiveBudget factors ``||g_p|| / median(||g||)``, clamped; and whether they are valid.

    The median of an even number of norms is the mean of the two middle ones. If the median is
    zero, any norm is not finite, or (without a clamp) a factor is 0 or overflows, the factors are
    all 1 (base budgets) and the flag is False.

    Examples:
        >>> f, ok = adaptive_factors(torch.tensor([1.0, 2.0, 8.0]))
        >>> f.tolist(), ok
        ([0.5, 1.0, 2.0], True)
    """
    if not isinstance(norms, Tensor) or norms.dim() != 1 or norms.numel() == 0:
        got = list(norms.shape) if isinstance(norms, Tensor) else type(norms).__name__
        raise ValueError(
            f"norms must be a non-empty 1-d tensor [K], one gradient norm per player, got {got}"
        )
    m = norms.double().median() if norms.numel() % 2 else norms.double().quantile(0.5)
    factor = (norms.double() / m).to(norms.dtype)
    # All three checks in one host synchronisation (on a GPU, each read waits for the queue).
    negative, usable, positive = torch.stack(
        [
            (norms < 0).any(),
            torch.isfinite(norms).all() & (m > 0),
            (torch.isfinite(factor) & (factor > 0)).all(),
        ]
    ).tolist()
    if negative:
        raise ValueError(f"norms must be >= 0 (gradient norms), got {norms.tolist()}")
    clamp = _check_clamp(clamp)
    if not usable or (clamp is None and not positive):  # a clamp bounds any factor of usable norms
        return torch.ones_like(norms), False
    if clamp is not None:
        factor = factor.clamp(clamp[0], clamp[1])
    return factor, True


def _check_clamp(clamp: object) -> tuple[float, float] | None:
    """``clamp`` as a pair of floats ``(lo, hi)`` with ``0 < lo <= 1 <= hi < inf``, or ``None``."""
    if clamp is None:
        return None
    try:
        lo, hi = (float(c) for c in clamp)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise TypeError(
            f"clamp must be a pair (lo, hi) with 0 < lo <= 1 <= hi, or None; got {clamp!r}"
        ) from None
    if not (0 < lo <= 1 <= hi) or not math.isfinite(hi):
        raise ValueError(
            f"clamp must satisfy 0 < lo <= 1 <= hi < inf, got {clamp!r}; "
            "the paper uses (0.5, 2.0); None turns clamping off"
        )
    return lo, hi


def _base_state(aggregator: Aggregator, device: torch.device | None) -> BudgetState:
    eps, alpha = base_budgets(aggregator.players, device)
    return BudgetState(eps, alpha, torch.ones_like(eps), torch.zeros((), dtype=torch.int64))


@dataclasses.dataclass(frozen=True)
class Fixed:
    """The fixed-budget game: every player keeps its own budget (the paper's baselines).

    Attributes:
        aggregator: how the players bargain.
        track_domination: also compute per-player gradient norms every step, to log the dominant
            player of a baseline (costs the per-player gradients; for MSD also short probe attacks).
        norm: the norm of the gradients when tracking domination.
        probe_steps: PGD steps of the probe attacks used for MSD when tracking domination (at
            each player's base budget, with step size ``max(alpha, eps / probe_steps)``).
    """

    aggregator: Aggregator
    track_domination: bool = False
    norm: str = "l2"
    probe_steps: int = 10

    def __post_init__(self) -> None:
        check_aggregator(self.aggregator, "a budget policy's aggregator")
        _checks.one_of("norm", self.norm, NORMS)
        _checks.integer_at_least("probe_steps", self.probe_steps, 1)

    @property
    def measure(self) -> Measure | None:
        """Per-player gradients after the attack when tracking domination, else nothing."""
        if not self.track_domination:
            return None
        return Measure("after", self.norm, self.probe_steps)

    @property
    def needs_gradients(self) -> bool:
        """Whether each step computes per-player gradient norms."""
        return self.track_domination

    def init(self, device: torch.device | None = None) -> BudgetState:
        """The base budgets."""
        return _base_state(self.aggregator, device)

    def update(self, state: BudgetState, measurements: Measurements) -> BudgetState:
        """Budgets never change."""
        return state


@dataclasses.dataclass(frozen=True)
class Adaptive:
    """The paper's AdaptiveBudget game: budgets follow each player's gradient norm.

    Attributes:
        aggregator: how the players bargain (MAX, AVG or MSD).
        norm: ``"l2"`` or ``"l1"``: the norm of each player's flattened parameter gradient.
        clamp: ``(lo, hi)`` bounds of ``eps / eps0`` (paper App. C.2), or ``None`` for none.
        timing: ``"same-batch"`` (faithful: per batch, attacks at base budgets, new budgets, then
            the aggregator at the new budgets) or ``"lagged"`` (budgets from batch t used on t+1;
            MAX and AVG reuse their own per-player attacks, MSD runs short probe attacks).
        scale_steps: scale each step size with its budget (the paper is silent; ours).
        probe_steps: PGD steps per player of the lagged MSD probes (at least 2 advised), at
            the base budgets, with step size ``max(alpha, eps / probe_steps)`` so that a short
            probe can reach its budget's boundary (``benchmarks/probe_fidelity.py`` measures the
            effect).
    """

    aggregator: Aggregator
    norm: str = "l2"
    clamp: tuple[float, float] | None = (0.5, 2.0)
    timing: str = "same-batch"
    scale_steps: bool = True
    probe_steps: int = 10

    def __post_init__(self) -> None:
        check_aggregator(self.aggregator, "a budget policy's aggregator")
        _checks.one_of("norm", self.norm, NORMS)
        _checks.one_of("timing", self.timing, TIMINGS)
        _checks.integer_at_least("probe_steps", self.probe_steps, 1)
        object.__setattr__(self, "clamp", _check_clamp(self.clamp))

    @property
    def measure(self) -> Measure:
        """Per-player gradients before the attack (same-batch) or after it (lagged)."""
        if self.timing == "same-batch":
            return Measure("before", self.norm)
        return Measure("after", self.norm, self.probe_steps)

    @property
    def needs_gradients(self) -> bool:
        """Whether each step computes per-player gradient norms (always, for AdaptiveBudget)."""
        return True

    def init(self, device: torch.device | None = None) -> BudgetState:
        """The base budgets."""
        return _base_state(self.aggregator, device)

    def update(self, state: BudgetState, measurements: Measurements) -> BudgetState:
        """New budgets from the per-player gradient norms, relative to the base budgets."""
        norms = measurements.norm
        if norms is None:
            raise ValueError("adaptive needs the players' gradient norms (measure.gradients)")
        eps0, alpha0 = base_budgets(self.aggregator.players, norms.device)
        factor, ok = adaptive_factors(norms.float(), self.clamp)
        alpha = alpha0 * factor if self.scale_steps else alpha0
        fallbacks = state.fallbacks + (0 if ok else 1)
        return BudgetState(eps0 * factor, alpha, factor, fallbacks)


def fixed(
    aggregator: Aggregator,
    *,
    track_domination: bool = False,
    norm: str = "l2",
    probe_steps: int = 10,
) -> Fixed:
    """The fixed-budget game (the paper's baselines).

    Args:
        aggregator: ``mr.max_(...)``, ``mr.avg(...)``, ``mr.msd(...)`` or any ``mr.Aggregator``.
        track_domination: log per-player gradient norms and the dominant player every step.
        norm: the norm of those gradients.
        probe_steps: steps of the per-player probe attacks for MSD when tracking (step size
            ``max(alpha, eps / probe_steps)``).

    Examples:
        >>> import multirobust as mr
        >>> mr.fixed(mr.max_(mr.linf, mr.l2)).init().eps.tolist()
        [0.029999999329447746, 0.5]
    """
    return Fixed(aggregator, track_domination, norm, probe_steps)


def adaptive(
    aggregator: Aggregator,
    norm: str = "l2",
    clamp: tuple[float, float] | None = (0.5, 2.0),
    timing: str = "same-batch",
    scale_steps: bool = True,
    probe_steps: int = 10,
) -> Adaptive:
    """The paper's AdaptiveBudget policy around an aggregator.

    Args:
        aggregator: ``mr.max_(...)``, ``mr.avg(...)``, ``mr.msd(...)`` or any ``mr.Aggregator``.
        norm: ``"l2"`` or ``"l1"`` norm of the per-player parameter gradients.
        clamp: bounds of ``eps / eps0``; ``None`` turns clamping off.
        timing: ``"same-batch"`` (faithful, default) or ``"lagged"`` (fast).
        scale_steps: scale step sizes with budgets (else fixed step sizes).
        probe_steps: steps of the short per-player probe attacks (lagged MSD only), with step
            size ``max(alpha, eps / probe_steps)``.

    Examples:
        >>> import multirobust as mr
        >>> game = mr.adaptive(mr.msd(mr.linf, mr.l2, mr.l1), norm="l2")
        >>> game.timing, game.clamp
        ('same-batch', (0.5, 2.0))
    """
    return Adaptive(aggregator, norm, clamp, timing, scale_steps, probe_steps)


Game = BudgetPolicy
"""A budget policy around an aggregator: what a ``multirobust.Trainer`` plays."""
