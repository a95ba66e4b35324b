"""``L1Eval``: the l_1 player for evaluation, with APGD-L1's adaptive sparsity."""

import dataclasses
import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from multirobust import _checks
from multirobust.players.base import flat
from multirobust.players.norms import L1, _NormPlayer


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
    alpha: float | None = None
    steps: int = 100
    restarts: int = 0
    name: str = "l1"
    rel_alpha: float | None = 0.25
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
        d = flat(delta)
        k_start = self._k_start(d.shape[1])
        nnz = (d != 0).sum(dim=1)
        k = torch.where(nnz > 0, torch.ceil(nnz / self.shrink), torch.full_like(nnz, k_start))
        return k.clamp(min(self.k_min, k_start), k_start).long()

    def largest_k(self, n: int) -> int:
        """The most coordinates one step can move: the first step's count."""
        return self._k_start(n)

    def draw(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """No random numbers: the step's sparsity follows ``delta``."""
        return None

    def step_k(self, delta: Tensor, noise: Tensor | None) -> Tensor:
        """The number of coordinates of the next step, per example: ``sparsity(delta)``."""
        return self.sparsity(delta)


l1_eval = L1Eval()
"""The evaluation l_1 player (CIFAR-10 budget 12); ``mr.l1_eval(eps=...)`` for another budget."""
