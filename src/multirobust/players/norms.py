"""The built-in players: l_inf, l_2 and l_1 balls around the input, inside the [0, 1] box.

Step sizes follow the budget by default (as foolbox's ``rel_stepsize``):
``alpha = rel_alpha * eps``, so ``mr.linf(eps=0.1)`` steps 0.01, not the CIFAR-10 step 0.003. At
the default budgets the paper's step sizes come out exactly. Pass ``alpha=...`` for an absolute
step size.
"""

import dataclasses
import math
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks
from multirobust.players.base import AdditivePlayer, Budget, check_settings, flat, per_example
from multirobust.projections import clip_to_box, project_l1_ball, project_l1_ball_box

_NORMAL_NORM = 1e-18
"""Below this an l_2 norm of float32 entries has lost precision (their squares underflow)."""


@dataclasses.dataclass(frozen=True)
class _NormPlayer(AdditivePlayer):
    """Shared fields and the relative step size of the norm-ball players.

    ``alpha=None`` (the default) sets ``alpha = rel_alpha * eps``, and a copy with a new ``eps``
    (``player(eps=...)``) scales it again; a given ``alpha`` is absolute (``rel_alpha`` None).
    """

    eps: float
    alpha: float | None
    steps: int
    restarts: int = 0
    name: str = ""
    rel_alpha: float | None = None

    def __post_init__(self) -> None:
        if self.alpha is None:
            if self.rel_alpha is None:
                raise ValueError(
                    f"{self.name}: pass alpha (an absolute step size) or rel_alpha (a share of eps)"
                )
            rel = _checks.positive_finite(f"{self.name}.rel_alpha", self.rel_alpha)
            eps = _checks.positive_finite(f"{self.name}.eps", self.eps)
            object.__setattr__(self, "rel_alpha", rel)
            object.__setattr__(self, "alpha", rel * eps)
        else:
            object.__setattr__(self, "rel_alpha", None)
        super().__post_init__()

    def __call__(self, **changes: Any) -> Any:
        """A copy with some settings changed: ``mr.linf(eps=8/255, steps=10)``.

        Unless ``alpha`` is given, a relative step size follows the new ``eps``.
        """
        check_settings(self, changes)
        if changes.get("alpha") is not None and changes.get("rel_alpha") is not None:
            raise ValueError(
                f"{self.name}: pass alpha (absolute) or rel_alpha (a share of eps), not both"
            )
        if "alpha" in changes:
            changes.setdefault("rel_alpha", None)
        elif "rel_alpha" in changes or self.rel_alpha is not None:
            changes["alpha"] = None
        return dataclasses.replace(self, **changes)

    def _random_radius(self, x: Tensor, eps: Budget, g: torch.Generator | None) -> Tensor:
        r = torch.rand((x.shape[0],), generator=g, device=x.device, dtype=x.dtype)
        return per_example(r, x) * per_example(eps, x)


@dataclasses.dataclass(frozen=True)
class Linf(_NormPlayer):
    """The l_inf player: sign-gradient steps, clipping into the l_inf ball and the box.

    Defaults are the paper's CIFAR-10 settings (eps 0.03, step 0.003, 40 iterations).

    Examples:
        >>> import multirobust as mr
        >>> mr.linf(eps=8 / 255, alpha=2 / 255, steps=10).steps
        10
    """

    eps: float = 0.03
    alpha: float | None = None
    steps: int = 40
    restarts: int = 0
    name: str = "linf"
    rel_alpha: float | None = 0.1

    def init(
        self, x: Float[Tensor, " b *s"], eps: Budget, generator: torch.Generator | None = None
    ) -> Float[Tensor, " b *s"]:
        """Uniform in ``[-eps, eps]`` per coordinate, clipped into the box."""
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return clip_to_box(x, (2 * u - 1) * per_example(eps, x))

    def ascend(
        self,
        x: Float[Tensor, " b *s"],
        delta: Float[Tensor, " b *s"],
        grad: Float[Tensor, " b *s"],
        alpha: Budget,
        noise: Tensor | None = None,
    ) -> Float[Tensor, " b *s"]:
        """``delta + alpha * sign(grad)``."""
        return delta + per_example(alpha, x) * torch.sign(grad)

    def project(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"], eps: Budget
    ) -> Float[Tensor, " b *s"]:
        """Clip into ``[-eps, eps]``, then into the box."""
        e = per_example(eps, x)
        return clip_to_box(x, torch.minimum(torch.maximum(delta, -e), e))

    def size(self, delta: Float[Tensor, " b *s"]) -> Float[Tensor, " b"]:
        """``max_i |delta_i|`` per example."""
        return flat(delta).abs().amax(dim=1)


@dataclasses.dataclass(frozen=True)
class L2(_NormPlayer):
    """The l_2 player: normalised-gradient steps, rescaling into the l_2 ball, then the box.

    Defaults are the MSD code's CIFAR-10 settings (eps 0.5, step 0.05, 50 iterations).

    Examples:
        >>> import multirobust as mr
        >>> mr.l2(eps=1.0).eps
        1.0
    """

    eps: float = 0.5
    alpha: float | None = None
    steps: int = 50
    restarts: int = 0
    name: str = "l2"
    rel_alpha: float | None = 0.1

    def init(
        self, x: Float[Tensor, " b *s"], eps: Budget, generator: torch.Generator | None = None
    ) -> Float[Tensor, " b *s"]:
        """A Gaussian direction with radius uniform in ``[0, eps]``, clipped into the box."""
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        unit = z / per_example(self.size(z).clamp_min(torch.finfo(x.dtype).tiny), x)
        return clip_to_box(x, unit * self._random_radius(x, eps, generator))

    def ascend(
        self,
        x: Float[Tensor, " b *s"],
        delta: Float[Tensor, " b *s"],
        grad: Float[Tensor, " b *s"],
        alpha: Budget,
        noise: Tensor | None = None,
    ) -> Float[Tensor, " b *s"]:
        """``delta + alpha * grad / ||grad||_2``; a zero gradient gives a zero step.

        Scale-invariant: where ``||grad||_2`` is not a normal float32 number (its squares
        underflow, as for a gradient scaled by 1e-30, or overflow), the gradient is first divided
        by its largest entry, so the step has length ``alpha`` whatever the gradient's magnitude.
        """
        a = per_example(alpha, x)
        norm = self.size(grad)
        scale = a / per_example(torch.where(norm > 0, norm, 1.0), x)
        peak = flat(grad).abs().amax(dim=1)
        rescaled = grad / per_example(torch.where(peak > 0, peak, 1.0), x)
        norm_r = self.size(rescaled)
        scale_r = a / per_example(torch.where(norm_r > 0, norm_r, 1.0), x)
        normal = (norm > _NORMAL_NORM) & torch.isfinite(norm)
        normal = normal.reshape(-1, *([1] * (x.dim() - 1)))
        step = torch.where(normal, scale * grad, scale_r * rescaled)
        return delta + step

    def project(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"], eps: Budget
    ) -> Float[Tensor, " b *s"]:
        """Rescale by ``eps / max(eps, ||delta||_2)``, then clip into the box."""
        e = per_example(eps, x)
        norm = per_example(self.size(delta), x)
        return clip_to_box(x, delta * (e / torch.maximum(e, norm)))

    def size(self, delta: Float[Tensor, " b *s"]) -> Float[Tensor, " b"]:
        """``||delta||_2`` per example."""
        return torch.linalg.vector_norm(flat(delta), ord=2, dim=1)


@dataclasses.dataclass(frozen=True)
class L1(_NormPlayer):
    """The l_1 player: sparse steepest ascent (SLIDE / MSD code) and the exact l_1 projection.

    Each step blocks the coordinates that cannot move (at the box's edge within ``gap``), draws
    ``k`` uniformly from ``[k_min, k_max]``, moves mass ``alpha`` equally over the coordinates whose
    ``|grad|`` is at least the k-th largest, projects onto the l_1 ball (Duchi et al. 2008; only
    examples outside it change), then clips into the box.

    Defaults are the paper's CIFAR-10 settings (eps 12, mass 1.0 per step, 50 iterations,
    k in [5, 20]).

    Args:
        k_min: the fewest coordinates moved per step.
        k_max: the most coordinates moved per step.
        gap: the box margin below which a coordinate counts as blocked; ``None`` uses the
            per-coordinate move ``alpha / k`` of each step, as the MSD code does.
        projection: ``"ball"`` (the paper's: l_1 ball, then clip into the box) or ``"ball-box"``
            (exact projection onto their intersection, Croce & Hein 2021).

    Examples:
        >>> import multirobust as mr
        >>> mr.l1(eps=10, alpha=0.4, k_min=1, k_max=1).k_max
        1
    """

    eps: float = 12.0
    alpha: float | None = None
    steps: int = 50
    restarts: int = 0
    name: str = "l1"
    rel_alpha: float | None = 1 / 12
    k_min: int = 5
    k_max: int = 20
    gap: float | None = None
    projection: str = "ball"

    def __post_init__(self) -> None:
        super().__post_init__()
        _checks.integer_at_least(f"{self.name}.k_min", self.k_min, 1)
        _checks.integer_at_least(f"{self.name}.k_max", self.k_max, 1)
        if self.k_min > self.k_max:
            raise ValueError(
                f"{self.name}.k_min must be <= k_max, got k_min={self.k_min} > k_max={self.k_max}"
            )
        gap = self.alpha / self.k_min if self.gap is None else self.gap
        if self.gap is not None:
            if not isinstance(self.gap, int | float) or not 0 <= self.gap:
                raise ValueError(f"{self.name}.gap must be a number >= 0, got {self.gap!r}")
            object.__setattr__(self, "gap", float(self.gap))
        if gap >= 0.5:
            overlap = (
                "the blocked bands [0, gap] and [1 - gap, 1] overlap: every coordinate is "
                "blocked in one direction at least, and those in [1 - gap, gap] in both"
            )
            if self.gap is not None:
                raise ValueError(f"{self.name}.gap must be below 0.5, got {gap:g}: {overlap}")
            raise ValueError(
                f"{self.name}: the blocking gap alpha / k_min = {self.alpha:g} / {self.k_min} = "
                f"{gap:.3g} (gap is None) is >= 0.5, so {overlap}; pass gap=... below 0.5, a "
                "larger k_min or a smaller alpha"
            )
        _checks.one_of(f"{self.name}.projection", self.projection, ("ball", "ball-box"))

    def check_input(self, x: Tensor) -> None:
        """Reject inputs with fewer coordinates than ``k_max``."""
        n = x[0].numel()
        if self.k_max > n:
            raise ValueError(
                f"{self.name}.k_max={self.k_max} is larger than the {n} coordinates of each "
                "input; pass a smaller k_max"
            )

    def init(
        self, x: Float[Tensor, " b *s"], eps: Budget, generator: torch.Generator | None = None
    ) -> Float[Tensor, " b *s"]:
        """Laplace noise rescaled to an l_1 radius uniform in ``[0, eps]``, clipped into the box."""
        mag = torch.empty(x.shape, device=x.device, dtype=x.dtype).exponential_(generator=generator)
        sign = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
        z = torch.where(sign, -mag, mag)
        unit = z / per_example(self.size(z).clamp_min(torch.finfo(x.dtype).tiny), x)
        return clip_to_box(x, unit * self._random_radius(x, eps, generator))

    def largest_k(self, n: int) -> int:
        """The most coordinates one step can move, for inputs of ``n`` coordinates."""
        return self.k_max

    def draw_k(self, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """The number of coordinates of one step, as a 0-d tensor (no host sync, no recompile)."""
        return torch.randint(self.k_min, self.k_max + 1, (), generator=generator, device=device)

    def draw(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """The next step's random number of coordinates (``draw_k``), drawn before the step."""
        return self.draw_k(generator, x.device)

    def direction(
        self,
        x: Float[Tensor, " b *s"],
        delta: Float[Tensor, " b *s"],
        grad: Float[Tensor, " b *s"],
        alpha: Budget,
        k: Tensor,
    ) -> Float[Tensor, " b *s"]:
        """The unit-l_1 steepest direction over the ``k`` largest unblocked gradient entries.

        ``k`` is one count for the batch (0-d) or one per example (``[b]``).
        """
        g = flat(grad)
        k = k.long().reshape(-1, 1).expand(x.shape[0], 1)
        if self.gap is None:
            gap = per_example(alpha, g) / k.to(g.dtype)
        else:
            gap = torch.as_tensor(self.gap, dtype=g.dtype, device=g.device)
        current = flat(x + delta)
        blocked = ((g < 0) & (current <= gap)) | ((g > 0) & (current >= 1 - gap))
        a = g.abs().masked_fill(blocked, 0)
        top = a.topk(self.largest_k(g.shape[1]), dim=1).values
        threshold = top.gather(1, k - 1)
        keep = (a >= threshold) & (a > 0)
        e = torch.sign(g) * keep / keep.sum(dim=1, keepdim=True).clamp_min(1)
        return e.view_as(grad)

    def ascend(
        self,
        x: Float[Tensor, " b *s"],
        delta: Float[Tensor, " b *s"],
        grad: Float[Tensor, " b *s"],
        alpha: Budget,
        noise: Tensor | None = None,
    ) -> Float[Tensor, " b *s"]:
        """``delta + alpha * e`` with ``e`` the sparse unit-l_1 direction over ``step_k``."""
        k = self.step_k(delta, noise)
        return delta + per_example(alpha, x) * self.direction(x, delta, grad, alpha, k)

    def step_k(self, delta: Tensor, noise: Tensor | None) -> Tensor:
        """The number of coordinates of the next step: the count ``draw`` drew (``noise``), or
        a fresh one from torch's global generator when called without it."""
        return noise if noise is not None else self.draw_k(None, delta.device)

    def project(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"], eps: Budget
    ) -> Float[Tensor, " b *s"]:
        """Onto the l_1 ball (exact, only examples outside it), then into the box."""
        e = torch.as_tensor(eps, device=x.device, dtype=x.dtype).expand(x.shape[0])
        if self.projection == "ball-box":
            return project_l1_ball_box(flat(delta), flat(x), e).view_as(delta)
        return clip_to_box(x, project_l1_ball(flat(delta), e).view_as(delta))

    def size(self, delta: Float[Tensor, " b *s"]) -> Float[Tensor, " b"]:
        """``||delta||_1`` per example."""
        return flat(delta).abs().sum(dim=1)


def check_budget(player: object, eps: float, d: int) -> None:
    """Refuse a built-in player's budget that covers the whole [0, 1]^d box (``mr.linf(eps=8.0)``
    meant as 8/255): every input could reach any other, and robust accuracy would mean nothing.

    Examples:
        >>> check_budget(linf, 0.03, 64)
        >>> check_budget(linf, 8.0, 64)
        Traceback (most recent call last):
        ...
        ValueError: threat 'linf': eps=8 is >= 1 (the whole box), the diameter of the [0, 1] box of these 64-dimensional inputs in its norm, so every input can reach any other; pass a smaller eps (8/255 = 0.0314 for 8 grey levels)
    """  # noqa: E501
    limits = ((Linf, 1.0, "1 (the whole box)"), (L2, math.sqrt(d), f"sqrt(d) = {math.sqrt(d):.4g}"))
    limits += ((L1, float(d), f"d = {d}"),)
    for cls, limit, what in limits:
        if isinstance(player, cls) and eps >= limit:
            raise ValueError(
                f"threat {player.name!r}: eps={eps:g} is >= {what}, the diameter of the [0, 1] box "
                f"of these {d}-dimensional inputs in its norm, so every input can reach any other; "
                f"pass a smaller eps ({eps:g}/255 = {eps / 255:.3g} for {eps:g} grey levels)"
            )


linf = Linf()
"""The l_inf player with the paper's CIFAR-10 settings; call it with keywords to change them."""
l2 = L2()
"""The l_2 player with the MSD code's CIFAR-10 settings; call it with keywords to change them."""
l1 = L1()
"""The l_1 player with the paper's CIFAR-10 settings; call it with keywords to change them."""
