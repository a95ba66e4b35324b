"""Training objectives: the loss the attacks climb and the loss the model minimises.

An ``Objective`` has three parts. ``reference`` is computed once per batch before the attacks
(the model frozen, no gradient): what the attack loss compares against. ``attack_loss`` is the
per-example loss every attack step climbs. ``training_loss`` is what the optimiser minimises on the
aggregator's batch. Cross-entropy (the paper's) is the default of every aggregator; ``trades`` is
TRADES' (Zhang et al., ICML 2019): attacks climb the KL divergence from the clean prediction, and
the model minimises clean cross-entropy plus ``beta`` times that divergence.

Per-player measurements for budget policies (``multirobust.measure``) always use cross-entropy, as
the paper's Alg. 2 does, whatever the objective.
"""

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from multirobust import _checks

if TYPE_CHECKING:
    from multirobust.aggregators import Perturbed

Model = Callable[[Tensor], Tensor]


@runtime_checkable
class Objective(Protocol):
    """The loss an aggregator's attacks climb and its training step minimises.

    Attributes:
        jitter: standard deviation of Gaussian noise added to every attack's starting state
            (``0``: start at the player's ``zero``). An attack loss whose gradient vanishes at
            the clean input (a divergence from the clean prediction) needs a small one.
    """

    jitter: float

    def reference(self, model: Model, x: Tensor, y: Tensor) -> Tensor:
        """What ``attack_loss`` compares against, ``[b, ...]``; the model is frozen, no grad."""
        ...

    def attack_loss(self, logits: Tensor, reference: Tensor) -> Tensor:
        """The per-example loss ``[b]`` the attacks climb."""
        ...

    def training_loss(self, model: Model, batch: "Perturbed") -> Tensor:
        """The scalar the optimiser minimises on the aggregator's batch."""
        ...


@dataclasses.dataclass(frozen=True)
class CrossEntropy:
    """Cross-entropy, for the attacks and the model alike (the paper's objective).

    Examples:
        >>> ce = CrossEntropy()
        >>> ce.attack_loss(torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1]))
        tensor([0.1269, 2.1269])
    """

    jitter: float = 0.0

    def reference(self, model: Model, x: Tensor, y: Tensor) -> Tensor:
        """The labels themselves."""
        return y

    def attack_loss(self, logits: Tensor, reference: Tensor) -> Float[Tensor, " b"]:
        """Per-example cross-entropy, in float32."""
        return F.cross_entropy(logits.float(), reference, reduction="none")

    def training_loss(self, model: Model, batch: "Perturbed") -> Tensor:
        """Mean cross-entropy of ``model`` on the adversarial batch, in float32."""
        return F.cross_entropy(model(batch.x).float(), batch.y)


@dataclasses.dataclass(frozen=True)
class Trades:
    """TRADES (Zhang et al., ICML 2019, Eq. 5): ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))``.

    The attacks climb ``KL(softmax f(x) || softmax f(x_adv))`` per example, from ``x`` plus
    Gaussian noise of standard deviation ``jitter`` (TRADES' 0.001: the divergence's gradient is
    zero at ``x`` itself). With several players, each adversarial example is paired with its own
    clean prediction (AVG's batch of ``K * b`` with the clean batch repeated). ``beta = 0`` is
    clean training.

    Attributes:
        beta: weight of the divergence (TRADES: 6 on CIFAR-10, 1 in its MNIST experiments).
        jitter: the noise of the attacks' start.

    Examples:
        >>> t = trades(beta=6.0)
        >>> p = torch.tensor([[0.5, 0.5]])
        >>> float(t.attack_loss(torch.tensor([[0.0, 0.0]]), p))
        0.0
    """

    beta: float = 6.0
    jitter: float = 0.001

    def __post_init__(self) -> None:
        if isinstance(self.beta, bool) or not isinstance(self.beta, int | float):
            raise TypeError(f"trades beta must be a number >= 0, got {self.beta!r}")
        if not 0 <= self.beta < float("inf"):
            raise ValueError(f"trades beta must be a finite number >= 0, got {self.beta!r}")
        object.__setattr__(self, "beta", float(self.beta))
        if self.jitter != 0:
            _checks.positive_finite("trades jitter", self.jitter)

    def reference(self, model: Model, x: Tensor, y: Tensor) -> Tensor:
        """The clean prediction ``softmax f(x)``, in float32."""
        return F.softmax(model(x).float(), dim=1)

    def attack_loss(self, logits: Tensor, reference: Tensor) -> Float[Tensor, " b"]:
        """``KL(reference || softmax logits)`` per example."""
        log_q = F.log_softmax(logits.float(), dim=1)
        return F.kl_div(log_q, reference, reduction="none").sum(dim=1)

    def training_loss(self, model: Model, batch: "Perturbed") -> Tensor:
        """Clean cross-entropy plus ``beta`` times the mean divergence over adversarial examples."""
        if batch.clean is None:
            raise ValueError(
                "trades needs the clean batch: the aggregator's Perturbed must carry clean=x"
            )
        clean = model(batch.clean).float()
        b = batch.clean.shape[0]
        natural = F.cross_entropy(clean, batch.y[:b])
        if self.beta == 0:
            return natural
        adv = model(batch.x).float()
        p = F.softmax(clean, dim=1).repeat(adv.shape[0] // b, 1)
        kl = F.kl_div(F.log_softmax(adv, dim=1), p, reduction="none").sum(dim=1)
        return natural + self.beta * kl.mean()


cross_entropy = CrossEntropy()
"""The default objective: cross-entropy."""


def trades(beta: float = 6.0, jitter: float = 0.001) -> Trades:
    """TRADES' objective: attacks climb the KL divergence, the model minimises CE + beta * KL.

    Examples:
        >>> import multirobust as mr
        >>> game = mr.msd(mr.linf, mr.l2, objective=mr.trades(beta=6.0))
        >>> game.objective.beta
        6.0
    """
    return Trades(beta, jitter)


def start(objective: Objective, zero: Tensor, generator: torch.Generator | None) -> Tensor:
    """An attack's first state: ``zero``, plus the objective's jitter when it has one."""
    if not objective.jitter:
        return zero
    noise = torch.randn(zero.shape, generator=generator, device=zero.device, dtype=zero.dtype)
    return zero + objective.jitter * noise
