"""Aggregators: how the players bargain over one batch — the paper's MAX, AVG and MSD.

An aggregator turns a clean batch into the adversarial batch the model trains on, given one budget
and one step size per player (tensors ``[K]``, so budget policies can change them without
recompiling). The training loss is the mean cross-entropy on that batch; ``gamma`` reports how
much each player weighed in it.
"""

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from multirobust import debug
from multirobust.attacks import Compile, frozen_model, input_gradient, iteration, origin, run_pgd
from multirobust.players import Player, check_players, step_randomness


class Perturbed(NamedTuple):
    """An aggregator's output for one batch.

    Attributes:
        x: the adversarial inputs to train on (``[b, ...]``, or ``[K*b, ...]`` for AVG).
        y: their labels.
        gamma: each player's weight in the loss, ``[K]``.
        per_player: each player's own adversarial batch ``[K, b, ...]`` when the aggregator made
            them (MAX, AVG), else ``None`` (MSD): the lagged AdaptiveBudget reuses them.
        player_loss: each player's mean cross-entropy at its own adversarial batch (eval mode),
            ``[K]``, when available.
    """

    x: Tensor
    y: Tensor
    gamma: Float[Tensor, " k"]
    per_player: Tensor | None
    player_loss: Float[Tensor, " k"] | None


Model = Callable[[Tensor], Tensor]

_WITHOUT_GRAPHS: dict[object, str] = {
    True: "default",
    "reduce-overhead": "default",
    "max-autotune": "max-autotune-no-cudagraphs",
}
"""The compile mode of the training step for each mode of the attacks: never CUDA graphs."""


@dataclasses.dataclass(frozen=True)
class _Aggregator:
    players: tuple[Player, ...]

    def __post_init__(self) -> None:
        players = self.players
        if len(players) == 1 and isinstance(players[0], list | tuple):
            players = tuple(players[0])
        object.__setattr__(self, "players", check_players(players))

    @property
    def names(self) -> tuple[str, ...]:
        """The players' names, in order."""
        return tuple(p.name for p in self.players)

    def base_budgets(self, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
        """The players' own budgets and step sizes as float32 tensors ``[K]``.

        Copied to a CUDA device without blocking: a blocking copy would wait for all the work
        queued before it (a host synchronisation in the middle of a training step).
        """
        cuda = device is not None and torch.device(device).type == "cuda"
        eps = torch.tensor([float(p.eps) for p in self.players], dtype=torch.float32)
        alpha = torch.tensor([float(p.alpha) for p in self.players], dtype=torch.float32)
        return eps.to(device, non_blocking=cuda), alpha.to(device, non_blocking=cuda)

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
            return self._perturb(model, x, y, eps, alpha, generator, compiled)

    def loss(self, model: Model, batch: Perturbed, compiled: Compile = False) -> Tensor:
        """The training loss: mean cross-entropy of ``model`` on the adversarial batch.

        ``compiled`` runs the forward (and so its backward) through ``torch.compile``; never as
        CUDA graphs, which the training step's autograd graph does not need.
        """
        mode = _WITHOUT_GRAPHS.get(compiled, compiled)  # type: ignore[call-overload]
        return iteration(training_loss, mode)(model, batch.x, batch.y)

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
        """Every player's own PGD (its restarts; its steps unless ``steps`` is given), the model
        already frozen by the caller: ``([K, b, ...] adversarial inputs, [K, b] losses)``."""
        inputs, losses = [], []
        for i, p in enumerate(self.players):
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
            )
            inputs.append(p.apply(x, r.delta))
            losses.append(r.loss)
        return torch.stack(inputs), torch.stack(losses)


@dataclasses.dataclass(frozen=True)
class _EachPlayer(_Aggregator):
    """An aggregator that combines the players' own attacks (``each_player``): MAX and AVG."""

    def _perturb(
        self,
        model: Model,
        x: Tensor,
        y: Tensor,
        eps: Tensor,
        alpha: Tensor,
        generator: torch.Generator | None,
        compiled: Compile,
    ) -> Perturbed:
        inputs, losses = self.each_player(model, x, y, eps, alpha, generator, compiled=compiled)
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
        return Perturbed(chosen, y, gamma, inputs, losses.mean(dim=1))


@dataclasses.dataclass(frozen=True)
class Avg(_EachPlayer):
    """AVG (Tramèr & Boneh, 2019): train on every player's adversarial batch at once.

    The loss is the mean over players of each batch-mean cross-entropy, i.e. one batch of size
    ``K * b``. ``gamma_p = 1 / K``.
    """

    def _combine(self, x: Tensor, y: Tensor, inputs: Tensor, losses: Tensor) -> Perturbed:
        k = len(self.players)
        gamma = torch.full((k,), 1.0 / k, device=x.device)
        return Perturbed(inputs.flatten(0, 1), y.repeat(k), gamma, inputs, losses.mean(dim=1))


@dataclasses.dataclass(frozen=True)
class Msd(_Aggregator):
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
        eps: Tensor,
        alpha: Tensor,
        generator: torch.Generator | None,
        compiled: Compile,
    ) -> Perturbed:
        b, k = x.shape[0], len(self.players)
        lead = self.players[0]
        delta = origin(lead, x)
        if any(getattr(p, "zero", None) is not None for p in self.players):
            self._check_shared_state(x, delta)
        best = delta
        best_loss = torch.full((b,), -torch.inf, device=x.device)
        best_from = torch.full((b,), -1, dtype=torch.long, device=x.device)
        step = iteration(msd_iteration, compiled)
        checking = debug.enabled()
        for t in range(self.steps):
            rngs = tuple(step_randomness(p, x, generator) for p in self.players)
            out = step(model, self.players, x, y, delta, eps, alpha, rngs)
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
        return Perturbed(lead.apply(x, best).detach(), y, gamma, None, None)

    def _check_shared_state(self, x: Tensor, lead_state: Tensor) -> None:
        """Refuse players whose states differ in shape: every MSD step starts from one shared
        ``delta`` (a player with a ``zero`` of its own, say a rotation angle, cannot share it)."""
        shapes = {p.name: tuple(origin(p, x).shape) for p in self.players[1:]}
        shapes = {self.players[0].name: tuple(lead_state.shape), **shapes}
        if len(set(shapes.values())) > 1:
            raise ValueError(
                "msd needs players that share one state (additive players, whose state is a "
                f"perturbation of x); their states' shapes differ: {shapes}. Train "
                "non-additive players with max_ or avg"
            )


def training_loss(model: Model, x: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of ``model`` on ``(x, y)``, in float32."""
    return F.cross_entropy(model(x).float(), y)


def msd_iteration(
    model: Model,
    players: tuple[Player, ...],
    x: Tensor,
    y: Tensor,
    delta: Tensor,
    eps: Tensor,
    alpha: Tensor,
    rngs: tuple[torch.Generator | Tensor | None, ...],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One MSD iteration: one input gradient, K candidates scored in one batched forward pass.

    ``rngs[i]`` is ``step_randomness(players[i], x, generator)``, drawn outside the iteration.

    Returns:
        ``(next delta, its loss [b], the winning player [b], the loss at delta [b])``.
    """
    b, k = x.shape[0], len(players)
    g, (loss_now, _) = input_gradient(model, players[0], x, y)(delta)
    candidates = torch.stack(
        [
            p.project(x, p.ascend(x, delta, g, alpha[i], rngs[i]), eps[i])
            for i, p in enumerate(players)
        ]
    )
    with torch.no_grad():
        flat = torch.cat([p.apply(x, candidates[i]) for i, p in enumerate(players)])
        scores = F.cross_entropy(model(flat).float(), y.repeat(k), reduction="none").view(k, b)
    win_loss, win = scores.max(dim=0)
    return candidates[win, torch.arange(b, device=x.device)], win_loss, win, loss_now


def max_(*players: Player) -> Max:
    """The paper's MAX aggregator over any number of players.

    Examples:
        >>> import multirobust as mr
        >>> mr.max_(mr.linf, mr.l2, mr.l1).names
        ('linf', 'l2', 'l1')
    """
    return Max(tuple(players))


def avg(*players: Player) -> Avg:
    """The paper's AVG aggregator over any number of players.

    Examples:
        >>> import multirobust as mr
        >>> len(mr.avg(mr.linf, mr.l2).players)
        2
    """
    return Avg(tuple(players))


def msd(*players: Player, steps: int = 50) -> Msd:
    """The paper's MSD aggregator (multi steepest descent) over any number of players.

    Args:
        *players: the threat models.
        steps: MSD iterations (50: the MSD code's CIFAR-10 setting; 100 on MNIST).

    Examples:
        >>> import multirobust as mr
        >>> mr.msd(mr.linf, mr.l2, mr.l1, steps=100).steps
        100
    """
    return Msd(tuple(players), steps)


Aggregator = Max | Avg | Msd
"""Any of the built-in aggregators."""
