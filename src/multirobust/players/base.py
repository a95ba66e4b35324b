"""The ``Player`` protocol, and ``AdditivePlayer``, the base of every player ``x + delta``.

A player owns its budget ``eps``, step size ``alpha``, default ``steps`` and ``restarts``, and pure
operations. Every operation takes the budget or step size explicitly (a float, a 0-d tensor or a
per-example tensor ``[b]``), so budget policies can change them without rebuilding the player and
``torch.compile`` never recompiles when they change.
"""

import dataclasses
from typing import Any, Protocol, runtime_checkable

import torch
from einops import rearrange
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks
from multirobust.projections import clip_to_box

Budget = float | Float[Tensor, ""] | Float[Tensor, " b"]
"""A budget or step size: one number for the batch, or one per example."""


@runtime_checkable
class Player(Protocol):
    """A threat model: what the adversary may change, and how it climbs the loss.

    Implement these members to define a new threat; the player then works in every aggregator,
    budget policy, trainer and evaluation. ``delta`` is the adversary's state: for additive players
    (subclasses of ``AdditivePlayer``, which supplies ``zero``, ``draw``, ``check_input`` and
    ``apply``) a perturbation of ``x``'s shape; for others whatever ``apply`` consumes (an angle
    per example, say). The attack differentiates the loss with respect to ``delta``.

    Randomness has one typed hook: before each step the attack calls ``draw(x, generator)`` and
    passes what it returns (a tensor, or ``None`` for a deterministic step) to ``ascend`` as
    ``noise``. A compiled attack iteration therefore never holds a ``torch.Generator``.

    Attributes:
        name: unique name of the player inside a game (``"linf"``).
        eps: base budget.
        alpha: base step size.
        steps: default number of attack iterations.
        restarts: default number of random restarts after the first run from ``zero(x)``.
    """

    name: str
    eps: float
    alpha: float
    steps: int
    restarts: int

    def check_input(self, x: Tensor) -> None:
        """Reject, with a clear error, inputs the player cannot handle (called before attacks)."""
        ...

    def zero(self, x: Tensor) -> Tensor:
        """The unperturbed state: where every attack's first run starts."""
        ...

    def init(self, x: Tensor, eps: Budget, generator: torch.Generator | None) -> Tensor:
        """A random feasible start for a restart."""
        ...

    def draw(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """The random numbers one ``ascend`` step needs, or ``None`` for a deterministic step."""
        ...

    def ascend(
        self, x: Tensor, delta: Tensor, grad: Tensor, alpha: Budget, noise: Tensor | None
    ) -> Tensor:
        """One steepest-ascent step of size ``alpha`` from ``delta`` along the loss gradient;
        ``noise`` is what ``draw`` returned for this step."""
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


PLAYER_MEMBERS = (
    "name",
    "eps",
    "alpha",
    "steps",
    "restarts",
    "check_input",
    "zero",
    "init",
    "draw",
    "ascend",
    "project",
    "size",
    "apply",
)
"""Every member of ``Player``, in the order the protocol lists them."""


def missing_members(player: object) -> list[str]:
    """The ``Player`` members ``player`` lacks (none for a player)."""
    return [m for m in PLAYER_MEMBERS if not hasattr(player, m)]


def check_players(players: tuple[object, ...], role: str = "player") -> tuple[Player, ...]:
    """Check a non-empty sequence of players with distinct names; returns it as a tuple.

    Examples:
        >>> from multirobust.players import linf, l2
        >>> [p.name for p in check_players((linf, l2))]
        ['linf', 'l2']
    """
    players = tuple(players)
    if not players:
        raise ValueError(f"at least one {role} is needed, e.g. (mr.linf, mr.l2, mr.l1)")
    for p in players:
        if isinstance(p, type):
            raise TypeError(
                f"every {role} must be a player instance, got the class {p.__name__}; pass an "
                f"instance such as {p.__name__}() (or the built-in mr.linf, mr.l2, mr.l1)"
            )
        lacking = missing_members(p)
        if lacking:
            raise TypeError(
                f"every {role} must implement the Player protocol; {type(p).__name__} lacks "
                f"{', '.join(lacking)}. Subclass mr.AdditivePlayer (it supplies zero, draw, "
                "check_input and apply) or define them"
            )
    names = [p.name for p in players]  # type: ignore[attr-defined]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(
            f"{role}s must have distinct names, got {names}; rename one with "
            f"e.g. mr.linf(name='{dupes[0]}_2')"
        )
    return players  # type: ignore[return-value]


def check_settings(player: object, changes: dict[str, Any]) -> None:
    """Reject settings a player does not have, listing the ones it has."""
    fields = [f.name for f in dataclasses.fields(player)]  # type: ignore[arg-type]
    unknown = [k for k in changes if k not in fields]
    if unknown:
        raise TypeError(
            f"{getattr(player, 'name', '?')} has no setting {unknown[0]!r}; its settings are "
            f"{', '.join(fields)}"
        )


def per_example(value: Budget, x: Tensor) -> Tensor:
    """A budget broadcastable against ``x`` (``[b, 1, ..., 1]``) on ``x``'s device and dtype.

    Examples:
        >>> per_example(torch.tensor([1.0, 2.0]), torch.zeros(2, 3, 4)).shape
        torch.Size([2, 1, 1])
    """
    t = torch.as_tensor(value, device=x.device, dtype=x.dtype)
    return t.reshape(-1, *([1] * (x.dim() - 1))) if t.dim() == 1 else t


def flat(t: Tensor) -> Tensor:
    """``t`` as ``[b, features]``."""
    return rearrange(t, "b ... -> b (...)")


@dataclasses.dataclass(frozen=True)
class AdditivePlayer:
    """The base of players whose state is a perturbation ``delta`` of ``x``'s shape.

    It supplies ``zero`` (no perturbation), ``draw`` (no randomness), ``check_input`` (accepts
    every input), ``apply`` (``x + delta`` in the [0, 1] box), ``box`` for projections, checks
    of the common settings, and calling the player with keywords for a changed copy. A subclass
    is a frozen dataclass declaring ``eps``, ``alpha``, ``steps``, ``restarts`` and ``name`` with
    defaults, and defines ``init``, ``ascend``, ``project`` and ``size``; override ``draw`` for a
    random step and ``check_input`` to refuse inputs early. ``docs/examples/l0_player.py`` is one.

    Examples:
        >>> import multirobust as mr
        >>> isinstance(mr.linf, mr.AdditivePlayer), mr.linf(eps=0.1).eps
        (True, 0.1)
    """

    def __post_init__(self) -> None:
        name = getattr(self, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        for field in ("eps", "alpha"):
            if hasattr(self, field):
                value = _checks.positive_finite(f"{name}.{field}", getattr(self, field))
                object.__setattr__(self, field, value)  # a budget is a float, never an int
        if hasattr(self, "steps"):
            _checks.integer_at_least(f"{name}.steps", self.steps, 1)  # type: ignore[attr-defined]
        if hasattr(self, "restarts"):
            _checks.integer_at_least(f"{name}.restarts", self.restarts, 0)  # type: ignore[attr-defined]

    def __call__(self, **changes: Any) -> Any:
        """A copy with some settings changed: ``mr.linf(eps=8/255, steps=10)``."""
        check_settings(self, changes)
        return dataclasses.replace(self, **changes)

    def check_input(self, x: Tensor) -> None:
        """Accept every input (override to refuse some before the attack)."""

    def zero(self, x: Tensor) -> Tensor:
        """No perturbation: ``zeros_like(x)``."""
        return torch.zeros_like(x)

    def draw(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        """No random numbers: the step is deterministic (override for a random step)."""
        return None

    def apply(
        self, x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"]
    ) -> Float[Tensor, " b *s"]:
        """``x + delta``, kept in the [0, 1] box.

        The gradient passes straight through the clip: ``clamp``'s own gradient is zero at the
        box's edges, which would freeze every saturated pixel (most of an MNIST image) at 0 or 1.
        """
        z = x + delta
        return z.clamp(0, 1).detach() + (z - z.detach())

    def box(self, x: Tensor, delta: Tensor) -> Tensor:
        """``delta`` clipped so that ``x + delta`` lies in [0, 1] (a projection's last step)."""
        return clip_to_box(x, delta)
