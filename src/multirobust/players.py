"""Threat models as players: the ``Player`` protocol and the built-in l_inf, l_2, l_1 players.

A player owns its budget ``eps``, step size ``alpha``, default ``steps`` and ``restarts``, and five
pure operations. Every operation takes the budget or step size explicitly (a float, a 0-d tensor or
a per-example tensor ``[b]``), so budget policies can change them without rebuilding the player and
``torch.compile`` never recompiles when they change.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks
from multirobust.projections import clip_to_box, project_l1_ball, project_l1_ball_box

Budget = float | Float[Tensor, ""] | Float[Tensor, " b"]
"""A budget or step size: one number for the batch, or one per example."""


@runtime_checkable
class Player(Protocol):
    """A threat model: what the adversary may change, and how it climbs the loss.

    Implement these members to define a new threat; the player then works in every aggregator,
    budget policy, trainer and evaluation. ``delta`` is the adversary's state: for additive players
    a perturbation of ``x``'s shape, for others whatever ``apply`` consumes (an angle per example,
    say). The attack differentiates the loss with respect to ``delta``.

    Attributes:
        name: unique name of the player inside a game (``"linf"``).
        eps: base budget.
        alpha: base step size.
        steps: default number of attack iterations.
        restarts: default number of random restarts after the first run from ``delta = 0``.

    Three optional members: ``check_input(x)``, called once before an attack, rejects inputs the
    player cannot handle with a clear error; ``zero(x)`` returns the unperturbed state, where it is
    not ``torch.zeros_like(x)`` (a non-additive player whose state has another shape);
    ``draw(x, generator)`` returns, as a tensor, the random numbers one ``ascend`` step needs.
    Attack loops call ``draw`` before each step and pass its result to ``ascend`` in place of the
    generator, so a compiled attack iteration holds no ``torch.Generator`` (which
    ``torch.compile`` cannot trace: a random ``ascend`` without ``draw`` still works, but its
    compiled iteration falls back to eager).
    """

    name: str
    eps: float
    alpha: float
    steps: int
    restarts: int

    def init(self, x: Tensor, eps: Budget, generator: torch.Generator | None) -> Tensor:
        """A random feasible start for the attack."""
        ...

    def ascend(
        self,
        x: Tensor,
        delta: Tensor,
        grad: Tensor,
        alpha: Budget,
        generator: torch.Generator | Tensor | None,
    ) -> Tensor:
        """One steepest-ascent step of size ``alpha`` from ``delta`` along the loss gradient.

        ``generator`` is the attack's generator, or what ``draw`` returned for a player with one.
        """
        ...

    def project(self, x: Tensor, delta: Tensor, eps: Budget) -> Tensor:
        """The closest (or a feasible) point of the player's set, within budget ``eps``."""
        ...

    def size(self, delta: Tensor) -> Tensor:
        """The size of ``delta`` per example, ``[b]``, in the units of ``eps``."""
        ...

    def apply(self, x: Tensor, delta: Tensor) -> Tensor:
        """The adversarial input made from ``x`` and ``delta``."""
        ...


def step_randomness(
    player: Player, x: Tensor, generator: torch.Generator | None
) -> torch.Generator | Tensor | None:
    """What ``player.ascend`` gets as its ``generator``: ``player.draw(x, generator)`` when the
    player defines ``draw``, else the generator itself."""
    draw = getattr(player, "draw", None)
    return draw(x, generator) if draw is not None else generator


def check_players(players: tuple[object, ...], role: str = "player") -> tuple[Player, ...]:
    """Check a non-empty sequence of players with distinct names; returns it as a tuple.

    Examples:
        >>> [p.name for p in check_players((linf, l2))]
        ['linf', 'l2']
    """
    players = tuple(players)
    if not players:
        raise ValueError(f"at least one {role} is needed, e.g. (mr.linf, mr.l2, mr.l1)")
    for p in players:
        if not isinstance(p, Player):
            raise TypeError(
                f"every {role} must implement the Player protocol (name, eps, alpha, steps, "
                f"restarts, init, ascend, project, size, apply), got {type(p).__name__}"
            )
    names = [p.name for p in players]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(
            f"{role}s must have distinct names, got {names}; rename one with "
            f"e.g. mr.linf(name='{dupes[0]}_2')"
        )
    return players  # type: ignore[return-value]


def _check_settings(player: object, changes: dict[str, Any]) -> None:
    """Reject settings a player does not have, listing the ones it has."""
    fields = [f.name for f in dataclasses.fields(player)]  # type: ignore[arg-type]
    unknown = [k for k in changes if k not in fields]
    if unknown:
        raise TypeError(
            f"{getattr(player, 'name', '?')} has no setting {unknown[0]!r}; its settings are "
            f"{', '.join(fields)}"
        )


def _per_example(value: Budget, x: Tensor) -> Tensor:
    """A budget broadcastable against ``x`` (``[b, 1, ..., 1]``) on ``x``'s device and dtype."""
    t = torch.as_tensor(value, device=x.device, dtype=x.dtype)
    return t.reshape(-1, *([1] * (x.dim() - 1))) if t.dim() == 1 else t


def _flat(t: Tensor) -> Tensor:
    return rearrange(t, "b ... -> b (...)")


@dataclasses.dataclass(frozen=True)
class _NormPlayer:
    """Shared fields, validation and helpers of the additive norm-ball players."""

    eps: float
    alpha: float
    steps: int
    restarts: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "eps", _checks.positive_finite(f"{self.name}.eps", self.eps))
        object.__setattr__(self, "alpha", _checks.positive_finite(f"{self.name}.alpha", self.alpha))
        _checks.integer_at_least(f"{self.name}.steps", self.steps, 1)
        _checks.integer_at_least(f"{self.name}.restarts", self.restarts, 0)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")

    def __call__(self, **changes: Any) -> Any:
        """A copy with some settings changed: ``mr.linf(eps=8/255, steps=10)``."""
        _check_settings(self, changes)
        return dataclasses.replace(self, **changes)

    def apply(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"]
    ) -> Float[Tensor, " b *s"]:
        """``x + delta``, kept in the [0, 1] box.

        The gradient passes straight through the clip: ``clamp``'s own gradient is zero at the
        box's edges, which would freeze every saturated pixel (most of an MNIST image) at 0 or 1.
        """
        z = x + delta
        return z.clamp(0, 1).detach() + (z - z.detach())

    def _random_radius(self, x: Tensor, eps: Budget, g: torch.Generator | None) -> Tensor:
        r = torch.rand((x.shape[0],), generator=g, device=x.device, dtype=x.dtype)
        return _per_example(r, x) * _per_example(eps, x)


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
    alpha: float = 0.003
    steps: int = 40
    restarts: int = 0
    name: str = "linf"

    def init(
        self, x: Float[Tensor, " b *s"], eps: Budget, generator: torch.Generator | None = None
    ) -> Float[Tensor, " b *s"]:
        """Uniform in ``[-eps, eps]`` per coordinate, clipped into the box."""
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return clip_to_box(x, (2 * u - 1) * _per_example(eps, x))

    def ascend(
        self,
        x: Float[Tensor, " b *s"],
        delta: Float[Tensor, " b *s"],
        grad: Float[Tensor, " b *s"],
        alpha: Budget,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, " b *s"]:
        """``delta + alpha * sign(grad)``."""
        return delta + _per_example(alpha, x) * torch.sign(grad)

    def project(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"], eps: Budget
    ) -> Float[Tensor, " b *s"]:
        """Clip into ``[-eps, eps]``, then into the box."""
        e = _per_example(eps, x)
        return clip_to_box(x, torch.minimum(torch.maximum(delta, -e), e))

    def size(self, delta: Float[Tensor, " b *s"]) -> Float[Tensor, " b"]:
        """``max_i |delta_i|`` per example."""
        return _flat(delta).abs().amax(dim=1)


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
    alpha: float = 0.05
    steps: int = 50
    restarts: int = 0
    name: str = "l2"

    def init(
        self, x: Float[Tensor, " b *s"], eps: Budget, generator: torch.Generator | None = None
    ) -> Float[Tensor, " b *s"]:
        """A Gaussian direction with radius uniform in ``[0, eps]``, clipped into the box."""
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        unit = z / _per_example(self.size(z).clamp_min(torch.finfo(x.dtype).tiny), x)
        return clip_to_box(x, unit * self._random_radius(x, eps, generator))

    def ascend(
        self,
        x: Float[Tensor, " b *s"],
        delta: Float[Tensor, " b *s"],
        grad: Float[Tensor, " b *s"],
        alpha: Budget,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, " b *s"]:
        """``delta + alpha * grad / ||grad||_2``; a zero gradient gives a zero step."""
        norm = self.size(grad)
        scale = _per_example(alpha, x) / _per_example(torch.where(norm > 0, norm, 1.0), x)
        return delta + scale * grad

    def project(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"], eps: Budget
    ) -> Float[Tensor, " b *s"]:
        """Rescale by ``eps / max(eps, ||delta||_2)``, then clip into the box."""
        e = _per_example(eps, x)
        norm = _per_example(self.size(delta), x)
        return clip_to_box(x, delta * (e / torch.maximum(e, norm)))

    def size(self, delta: Float[Tensor, " b *s"]) -> Float[Tensor, " b"]:
        """``||delta||_2`` per example."""
        return torch.linalg.vector_norm(_flat(delta), ord=2, dim=1)


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
    alpha: float = 1.0
    steps: int = 50
    restarts: int = 0
    name: str = "l1"
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
        unit = z / _per_example(self.size(z).clamp_min(torch.finfo(x.dtype).tiny), x)
        return clip_to_box(x, unit * self._random_radius(x, eps, generator))

    def largest_k(self, n: int) -> int:
        """The most coordinates one step can move, for inputs of ``n`` coordinates."""
        return self.k_max

    def draw_k(self, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """The number of coordinates of one step, as a 0-d tensor (no host sync, no recompile)."""
        return torch.randint(self.k_min, self.k_max + 1, (), generator=generator, device=device)

    @property
    def draw(self) -> Callable[[Tensor, torch.Generator | None], Tensor] | None:
        """``draw(x, generator)``: the next step's random number of coordinates (``draw_k``),
        drawn before the step; ``None`` for a subclass that overrides ``step_k`` (which then gets
        the generator itself, as before ``draw`` existed)."""
        if type(self).step_k is not L1.step_k:
            return None
        return lambda x, generator: self.draw_k(generator, x.device)

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
        g = _flat(grad)
        k = k.long().reshape(-1, 1).expand(x.shape[0], 1)
        if self.gap is None:
            gap = _per_example(alpha, g) / k.to(g.dtype)
        else:
            gap = torch.as_tensor(self.gap, dtype=g.dtype, device=g.device)
        current = _flat(x + delta)
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
        generator: torch.Generator | Tensor | None = None,
    ) -> Float[Tensor, " b *s"]:
        """``delta + alpha * e`` with ``e`` the sparse unit-l_1 direction over ``step_k``."""
        k = self.step_k(delta, generator)
        return delta + _per_example(alpha, x) * self.direction(x, delta, grad, alpha, k)

    def step_k(self, delta: Tensor, generator: torch.Generator | Tensor | None) -> Tensor:
        """The number of coordinates of the next step: uniform in ``[k_min, k_max]``, or the
        count ``draw`` already drew (a tensor passed as ``generator``)."""
        if isinstance(generator, Tensor):
            return generator
        return self.draw_k(generator, delta.device)

    def project(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"], eps: Budget
    ) -> Float[Tensor, " b *s"]:
        """Onto the l_1 ball (exact, only examples outside it), then into the box."""
        e = torch.as_tensor(eps, device=x.device, dtype=x.dtype).expand(x.shape[0])
        if self.projection == "ball-box":
            return project_l1_ball_box(_flat(delta), _flat(x), e).view_as(delta)
        return clip_to_box(x, project_l1_ball(_flat(delta), e).view_as(delta))

    def size(self, delta: Float[Tensor, " b *s"]) -> Float[Tensor, " b"]:
        """``||delta||_1`` per example."""
        return _flat(delta).abs().sum(dim=1)


linf = Linf()
"""The l_inf player with the paper's CIFAR-10 settings; call it with keywords to change them."""
l2 = L2()
"""The l_2 player with the MSD code's CIFAR-10 settings; call it with keywords to change them."""
l1 = L1()
"""The l_1 player with the paper's CIFAR-10 settings; call it with keywords to change them."""
