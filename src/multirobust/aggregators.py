"""Aggregators: how the players bargain over one batch — the paper's MAX, AVG and MSD.

An ``Aggregator`` turns a clean batch into the batch the model trains on, given one budget and one
step size per player (tensors ``[K]``, so budget policies can change them without recompiling), and
computes the training loss on it. The built-ins take an ``objective`` (cross-entropy by default;
``mr.trades(beta)`` for TRADES): the loss their attacks climb and the model minimises. ``gamma``
reports how much each player weighed in the batch.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from multirobust import debug
from multirobust._compile import Compile, iteration, training_mode
from multirobust.attacks import frozen_model, input_gradient, run_pgd
from multirobust.objectives import Objective, cross_entropy, start
from multirobust.players import AdditivePlayer, Player, check_players


class Perturbed(NamedTuple):
    """An aggregator's output for one batch.

    Attributes:
        x: the adversarial inputs to train on (``[b, ...]``, or ``[K*b, ...]`` for AVG).
        y: their labels.
        gamma: each player's weight in the batch, ``[K]``.
        per_player: each player's own adversarial batch ``[K, b, ...]`` when the aggregator made
            them (MAX, AVG), else ``None`` (MSD): a lagged budget policy reuses them.
        player_loss: each player's mean attack loss at its own adversarial batch (eval mode),
            ``[K]``, when available.
        clean: the clean batch ``[b, ...]`` (objectives such as TRADES' train on it too).
    """

    x: Tensor
    y: Tensor
    gamma: Float[Tensor, " k"]
    per_player: Tensor | None
    player_loss: Float[Tensor, " k"] | None
    clean: Tensor | None = None


Model = Callable[[Tensor], Tensor]


@runtime_checkable
class Aggregator(Protocol):
    """How the players bargain over one batch: what a budget policy wraps and a Trainer plays.

    Implement these three members to define a new aggregator (``docs/guide/new-aggregator.md``).
    ``perturb`` runs with the model already frozen (eval mode) and without autograd when the
    Trainer calls it; it must not change the model. ``loss`` runs in train mode.

    Attributes:
        players: the threat models, in order; budgets and step sizes come in this order.
    """

    players: tuple[Player, ...]

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: Float[Tensor, " k"] | None = None,
        alpha: Float[Tensor, " k"] | None = None,
        generator: torch.Generator | None = None,
        compiled: Compile = False,
    ) -> Perturbed:
        """The batch to train on, from a checked clean batch and one budget per player."""
        ...

    def loss(self, model: Model, batch: Perturbed, compiled: Compile = False) -> Tensor:
        """The scalar the optimiser minimises on ``batch``."""
        ...


AGGREGATOR_MEMBERS = ("players", "perturb", "loss")
"""Every member of ``Aggregator``."""


def check_aggregator(aggregator: object, role: str = "aggregator") -> None:
    """Refuse what does not implement ``Aggregator``, naming the members it lacks.

    Examples:
        >>> try:
        ...     check_aggregator(object())
        ... except TypeError as e:
        ...     print(str(e).split("; ")[1])
        object lacks players, perturb, loss
    """
    if isinstance(aggregator, type):
        raise TypeError(
            f"{role} must be an aggregator instance, got the class {aggregator.__name__}; build "
            "one with mr.max_(...), mr.avg(...) or mr.msd(...)"
        )
    lacking = [m for m in AGGREGATOR_MEMBERS if not hasattr(aggregator, m)]
    if lacking:
        raise TypeError(
            f"{role} must implement mr.Aggregator (e.g. mr.max_, mr.avg, mr.msd); "
            f"{type(aggregator).__name__} lacks {', '.join(lacking)}"
        )
    check_players(aggregator.players)  # type: ignore[attr-defined]


def player_names(players: tuple[Player, ...]) -> tuple[str, ...]:
    """The players' names, in order."""
    return tuple(p.name for p in players)


def base_budgets(
    players: tuple[Player, ...], device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """The players' own budgets and step sizes as float32 tensors ``[K]``.

    Copied to a CUDA device without blocking: a blocking copy would wait for all the work
    queued before it (a host synchronisation in the middle of a training step).

    Examples:
        >>> import multirobust as mr
        >>> base_budgets((mr.linf, mr.l2))[0].tolist()
        [0.029999999329447746, 0.5]
    """
    cuda = device is not None and torch.device(device).type == "cuda"
    eps = torch.tensor([float(p.eps) for p in players], dtype=torch.float32)
    alpha = torch.tensor([float(p.alpha) for p in players], dtype=torch.float32)
    return eps.to(device, non_blocking=cuda), alpha.to(device, non_blocking=cuda)


def attack_each(
    model: Model,
    players: tuple[Player, ...],
    x: Tensor,
    y: Tensor,
    eps: Tensor,
    alpha: Tensor,
    generator: torch.Generator | None,
    *,
    steps: int | None = None,
    compiled: Compile = False,
    objective: Objective = cross_entropy,
    reference: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Every player's own PGD (its restarts; its steps unless ``steps`` is given), the model
    already frozen by the caller: ``([K, b, ...] adversarial inputs, [K, b] attack losses)``.

    Examples:
        >>> import torch, multirobust as mr
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> players = (mr.linf(eps=0.1, steps=2), mr.l2(eps=0.5, steps=2))
        >>> eps, alpha = base_budgets(players)
        >>> x, y = torch.rand(5, 1, 2, 2), torch.randint(0, 3, (5,))
        >>> inputs, losses = attack_each(net, players, x, y, eps, alpha, None)
        >>> inputs.shape, losses.shape
        (torch.Size([2, 5, 1, 2, 2]), torch.Size([2, 5]))
    """
    ref = objective.reference(model, x, y) if reference is None else reference
    inputs, losses = [], []
    for i, p in enumerate(players):
        r = run_pgd(
            model,
            p,
            x,
            y,
            eps=eps[i],
            alpha=alpha[i],
            steps=p.steps if steps is None else steps,
            restarts=p.restarts,
            generator=generator,
            compiled=compiled,
            objective=objective,
            reference=ref,
        )
        inputs.append(p.apply(x, r.delta))
        losses.append(r.loss)
    return torch.stack(inputs), torch.stack(losses)


@dataclasses.dataclass(frozen=True)
class _Builtin:
    """What MAX, AVG and MSD share: checked players, an objective, budget checks, the loss.
    Each defines ``_perturb(model, x, y, reference, eps, alpha, generator, compiled)``."""

    players: tuple[Player, ...]
    objective: Objective = cross_entropy

    def __post_init__(self) -> None:
        players = self.players
        if len(players) == 1 and isinstance(players[0], list | tuple):
            players = tuple(players[0])
        object.__setattr__(self, "players", check_players(players))
        if not isinstance(self.objective, Objective):
            raise TypeError(
                "objective must implement mr.Objective (jitter, reference, attack_loss, "
                f"training_loss), e.g. mr.cross_entropy or mr.trades(beta=6), got "
                f"{type(self.objective).__name__}"
            )

    @property
    def names(self) -> tuple[str, ...]:
        """The players' names, in order."""
        return player_names(self.players)

    def base_budgets(self, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """The players' own budgets and step sizes, ``[K]`` each (see ``base_budgets``)."""
        return base_budgets(self.players, device)

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: Float[Tensor, " k"] | None = None,
        alpha: Float[Tensor, " k"] | None = None,
        generator: torch.Generator | None = None,
        compiled: Compile = False,
    ) -> Perturbed:
        """The adversarial batch to train on, with the model in eval mode during the attack.

        Args:
            model: the classifier; left exactly as found.
            x: a checked batch of inputs in [0, 1].
            y: its int64 class labels.
            eps: one budget per player, ``[K]``; ``None``: the players' own.
            alpha: one step size per player, ``[K]``; ``None``: the players' own.
            generator: the source of the random starts and random steps.
            compiled: run each attack iteration through ``torch.compile`` (``True`` or a mode,
                see ``multirobust.attacks.iteration``).
        """
        k = len(self.players)
        for name, t in (("eps", eps), ("alpha", alpha)):
            if t is not None and (not isinstance(t, torch.Tensor) or t.shape != (k,)):
                got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(
                    f"{name} must be a tensor [K] with one entry per player (K={k}), got {got}"
                )
        if eps is None or alpha is None:
            base_eps, base_alpha = self.base_budgets(x.device)
            eps = base_eps if eps is None else eps
            alpha = base_alpha if alpha is None else alpha
        eps, alpha = eps.to(x.device), alpha.to(x.device)
        with frozen_model(model), torch.no_grad():
            reference = self.objective.reference(model, x, y)
            return self._perturb(model, x, y, reference, eps, alpha, generator, compiled)  # type: ignore[attr-defined]

    def loss(self, model: Model, batch: Perturbed, compiled: Compile = False) -> Tensor:
        """The objective's training loss on ``batch`` (mean cross-entropy by default).

        ``compiled`` runs the forward (and so its backward) through ``torch.compile``; never as
        CUDA graphs, which the training step's autograd graph does not need.
        """
        return iteration(self.objective.training_loss, training_mode(compiled))(model, batch)

    def each_player(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        alpha: Tensor,
        generator: torch.Generator | None,
        steps: int | None = None,
        compiled: Compile = False,
    ) -> tuple[Tensor, Tensor]:
        """``attack_each`` over this aggregator's players, with its objective."""
        return attack_each(
            model,
            self.players,
            x,
            y,
            eps,
            alpha,
            generator,
            steps=steps,
            compiled=compiled,
            objective=self.objective,
        )


@dataclasses.dataclass(frozen=True)
class _EachPlayer(_Builtin):
    """An aggregator that combines the players' own attacks (``attack_each``): MAX and AVG."""

    def _perturb(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        reference: Tensor,
        eps: Tensor,
        alpha: Tensor,
        generator: torch.Generator | None,
        compiled: Compile,
    ) -> Perturbed:
        inputs, losses = attack_each(
            model,
            self.players,
            x,
            y,
            eps,
            alpha,
            generator,
            compiled=compiled,
            objective=self.objective,
            reference=reference,
        )
        return self._combine(x, y, inputs, losses)

    def _combine(self, x: Tensor, y: Tensor, inputs: Tensor, losses: Tensor) -> Perturbed:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Max(_EachPlayer):
    """MAX (Tramèr & Boneh, 2019): per example, train on the player whose attack hurts most.

    Every player runs its own PGD; per example the highest-loss adversarial input is kept.
    ``gamma_p`` is the fraction of examples won by player p.
    """

    def _combine(self, x: Tensor, y: Tensor, inputs: Tensor, losses: Tensor) -> Perturbed:
        win = losses.argmax(dim=0)
        chosen = inputs[win, torch.arange(x.shape[0], device=x.device)]
        gamma = F.one_hot(win, len(self.players)).float().mean(dim=0)  # bincount syncs on CUDA
        return Perturbed(chosen, y, gamma, inputs, losses.mean(dim=1), x)


@dataclasses.dataclass(frozen=True)
class Avg(_EachPlayer):
    """AVG (Tramèr & Boneh, 2019): train on every player's adversarial batch at once.

    The loss is the mean over players of each batch-mean cross-entropy, i.e. one batch of size
    ``K * b``. ``gamma_p = 1 / K``.
    """

    def _combine(self, x: Tensor, y: Tensor, inputs: Tensor, losses: Tensor) -> Perturbed:
        k = len(self.players)
        gamma = torch.full((k,), 1.0 / k, device=x.device)
        x_all, y_all = inputs.flatten(0, 1), y.repeat(k)
        return Perturbed(x_all, y_all, gamma, inputs, losses.mean(dim=1), x)


@dataclasses.dataclass(frozen=True)
class Msd(_Builtin):
    """MSD (Maini et al., 2020): one shared perturbation, the steepest player's step per example.

    Each of ``steps`` iterations takes one input gradient at the current ``delta``; every player
    forms its candidate ``project_p(ascend_p(delta, g))``; the K candidates are scored in one
    batched forward pass and each example moves to its highest-loss candidate. The highest-loss
    ``delta`` over all iterations is returned. ``gamma_p`` is the fraction of examples whose
    returned ``delta`` came from player p's step (the sum is below 1 when, for some example, no
    step beat the unperturbed input).

    Attributes:
        steps: MSD iterations (50 on CIFAR-10, 100 on MNIST in the MSD code).
    """

    steps: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"msd steps must be an int >= 1, got {self.steps!r}")

    def _perturb(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        reference: Tensor,
        eps: Tensor,
        alpha: Tensor,
        generator: torch.Generator | None,
        compiled: Compile,
    ) -> Perturbed:
        b, k = x.shape[0], len(self.players)
        lead = self.players[0]
        delta = lead.zero(x)
        if not all(isinstance(p, AdditivePlayer) for p in self.players):
            self._check_shared_state(x, delta)
        if self.objective.jitter:
            delta = lead.project(x, start(self.objective, delta, generator), eps[0])
        best = delta
        best_loss = torch.full((b,), -torch.inf, device=x.device)
        best_from = torch.full((b,), -1, dtype=torch.long, device=x.device)
        step = iteration(msd_iteration, compiled)
        checking = debug.enabled()
        for t in range(self.steps):
            noises = tuple(p.draw(x, generator) for p in self.players)
            out = step(model, self.players, x, reference, delta, eps, alpha, noises, self.objective)
            delta, win_loss, win, loss_now = out
            if checking:  # each example's delta lies in its winning player's ball
                for i, p in enumerate(self.players):
                    mine = win == i
                    debug.check_step(p, x[mine], delta[mine], eps[i], f"MSD step {t + 1}")
            if t == 0:  # the start point competes too
                best_loss = loss_now
            better = win_loss > best_loss
            best = torch.where(better.view(-1, *([1] * (x.dim() - 1))), delta, best)
            best_loss = torch.where(better, win_loss, best_loss)
            best_from = torch.where(better, win, best_from)
        gamma = torch.stack([(best_from == i).float().mean() for i in range(k)])
        return Perturbed(lead.apply(x, best).detach(), y, gamma, None, None, x)

    def _check_shared_state(self, x: Tensor, lead_state: Tensor) -> None:
        """Refuse players whose states differ in shape: every MSD step starts from one shared
        ``delta`` (a player with a ``zero`` of its own, say a rotation angle, cannot share it)."""
        shapes = {p.name: tuple(p.zero(x).shape) for p in self.players[1:]}
        shapes = {self.players[0].name: tuple(lead_state.shape), **shapes}
        if len(set(shapes.values())) > 1:
            raise ValueError(
                "msd needs players that share one state (additive players, whose state is a "
                f"perturbation of x); their states' shapes differ: {shapes}. Train "
                "non-additive players with max_ or avg"
            )


def msd_iteration(
    model: Model,
    players: tuple[Player, ...],
    x: Tensor,
    y: Tensor,
    delta: Tensor,
    eps: Tensor,
    alpha: Tensor,
    noises: tuple[Tensor | None, ...],
    objective: Objective = cross_entropy,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One MSD iteration: one input gradient, K candidates scored in one batched forward pass.

    ``noises[i]`` is ``players[i].draw(x, generator)``, drawn outside the iteration; ``y`` is
    the objective's reference (the labels, for cross-entropy).

    Returns:
        ``(next delta, its loss [b], the winning player [b], the loss at delta [b])``.
    """
    b, k = x.shape[0], len(players)
    g, (loss_now, _) = input_gradient(model, players[0], x, y, objective)(delta)
    candidates = torch.stack(
        [
            p.project(x, p.ascend(x, delta, g, alpha[i], noises[i]), eps[i])
            for i, p in enumerate(players)
        ]
    )
    with torch.no_grad():
        flat = torch.cat([p.apply(x, candidates[i]) for i, p in enumerate(players)])
        repeated = y.repeat(k, *([1] * (y.dim() - 1)))
        scores = objective.attack_loss(model(flat), repeated).view(k, b)
    win_loss, win = scores.max(dim=0)
    return candidates[win, torch.arange(b, device=x.device)], win_loss, win, loss_now


def max_(*players: Player, objective: Objective = cross_entropy) -> Max:
    """The paper's MAX aggregator over any number of players.

    Args:
        *players: the threat models.
        objective: the loss the attacks climb and the model minimises (``mr.cross_entropy``).

    Examples:
        >>> import multirobust as mr
        >>> mr.max_(mr.linf, mr.l2, mr.l1).names
        ('linf', 'l2', 'l1')
    """
    return Max(tuple(players), objective=objective)


def avg(*players: Player, objective: Objective = cross_entropy) -> Avg:
    """The paper's AVG aggregator over any number of players.

    Args:
        *players: the threat models.
        objective: the loss the attacks climb and the model minimises (``mr.cross_entropy``).

    Examples:
        >>> import multirobust as mr
        >>> len(mr.avg(mr.linf, mr.l2).players)
        2
    """
    return Avg(tuple(players), objective=objective)


def msd(*players: Player, steps: int = 50, objective: Objective = cross_entropy) -> Msd:
    """The paper's MSD aggregator (multi steepest descent) over any number of players.

    Args:
        *players: the threat models.
        steps: MSD iterations (50: the MSD code's CIFAR-10 setting; 100 on MNIST).
        objective: the loss the attacks climb and the model minimises (``mr.cross_entropy``).

    Examples:
        >>> import multirobust as mr
        >>> mr.msd(mr.linf, mr.l2, mr.l1, steps=100).steps
        100
    """
    return Msd(tuple(players), objective=objective, steps=steps)
