"""PGD with one player: ``pgd(player, steps, restarts)`` and the attack loop the aggregators share.

Input gradients come from ``torch.func.grad`` of the summed per-example loss, so each example's
step does not depend on the batch it is in. Attacks never change the model: it runs in eval mode
during the attack and every module's train/eval flag is restored afterwards.
"""

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from jaxtyping import Bool, Float, Shaped
from torch import Tensor, nn

from multirobust import _checks, debug
from multirobust._compile import COMPILE_MODES, Compile, iteration
from multirobust.objectives import Objective, cross_entropy, start
from multirobust.players import Budget, Player, check_players

__all__ = ["COMPILE_MODES", "PGD", "Compile", "PGDResult", "iteration", "pgd", "run_pgd"]

KEEP = ("max-loss", "first-success")


class PGDResult(NamedTuple):
    """What one player's attack found, per example.

    Attributes:
        delta: the kept perturbation (the player's state, e.g. ``[b, c, h, w]``); in the
            result of ``PGD.run``, the adversarial input itself.
        loss: the cross-entropy at ``delta``, ``[b]``.
        success: whether ``delta`` misclassifies, ``[b]``.
    """

    delta: Tensor
    loss: Float[Tensor, " b"]
    success: Bool[Tensor, " b"]


@contextlib.contextmanager
def frozen_model(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for an attack and restore every module's flag afterwards.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout()).train()
        >>> with frozen_model(net):
        ...     net[1].training
        False
        >>> net[1].training
        True
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def make_generator(device: torch.device, seed: int | None) -> torch.Generator:
    """A generator on ``device``: seeded with ``seed``, or from torch's global RNG if ``None``.

    Drawing the seed from the global RNG makes ``torch.manual_seed`` enough to repeat a run.
    """
    g = torch.Generator(device=device)
    if seed is None:
        seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    g.manual_seed(seed)
    return g


def input_gradient(
    model: Callable[[Tensor], Tensor],
    player: Player,
    x: Tensor,
    y: Tensor,
    objective: Objective = cross_entropy,
) -> Callable[[Tensor], tuple[Tensor, tuple[Tensor, Tensor]]]:
    """``delta -> (grad, (per-example loss, logits))`` for the summed attack loss at ``delta``.

    ``y`` is the objective's reference (the labels, for cross-entropy).
    """

    def summed_loss(delta: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        logits = model(player.apply(x, delta))
        losses = objective.attack_loss(logits, y)
        return losses.sum(), (losses.detach(), logits.detach())

    grad_fn = torch.func.grad(summed_loss, has_aux=True)

    def gradient(delta: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        # Under an outer no_grad, func.grad still differentiates w.r.t. delta, but its output is
        # not recorded as a function of the model's parameters (no graph kept across steps).
        with torch.no_grad():
            return grad_fn(delta)

    return gradient


def pgd_iteration(
    model: Callable[[Tensor], Tensor],
    player: Player,
    x: Tensor,
    y: Tensor,
    delta: Tensor,
    eps: Budget,
    alpha: Budget,
    noise: Tensor | None,
    objective: Objective = cross_entropy,
) -> tuple[Tensor, Tensor, Tensor]:
    """One PGD iteration: ``(next delta, per-example loss at delta, logits at delta)``.

    ``noise`` is ``player.draw(x, generator)``, drawn outside, so that a compiled iteration
    holds no generator; ``y`` is the objective's reference (the labels, for cross-entropy).
    """
    g, (losses, logits) = input_gradient(model, player, x, y, objective)(delta)
    return player.project(x, player.ascend(x, delta, g, alpha, noise), eps), losses, logits


def pgd_score(
    model: Callable[[Tensor], Tensor],
    player: Player,
    x: Tensor,
    y: Tensor,
    delta: Tensor,
    objective: Objective = cross_entropy,
) -> tuple[Tensor, Tensor]:
    """``(per-example loss, logits)`` at ``delta``: a PGD run's last iterate, or its result."""
    logits = model(player.apply(x, delta))
    return objective.attack_loss(logits, y), logits


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.reshape(-1, *([1] * (a.dim() - 1))), a, b)


@torch.no_grad()
def run_pgd(
    model: Callable[[Tensor], Tensor],
    player: Player,
    x: Tensor,
    y: Tensor,
    *,
    eps: Budget,
    alpha: Budget,
    steps: int,
    restarts: int,
    generator: torch.Generator | None,
    keep: str = "max-loss",
    compiled: Compile = False,
    objective: Objective = cross_entropy,
    reference: Tensor | None = None,
) -> PGDResult:
    """The attack loop without checks: the caller validated the arguments and froze the model.

    Run 0 starts at ``delta = 0``, each restart at ``player.init``. ``keep="max-loss"`` keeps per
    example the highest-loss perturbation seen at any iteration of any run (training);
    ``keep="first-success"`` keeps the first one that misclassifies, else the highest-loss one,
    and stops early once every example is broken (evaluation). ``compiled`` runs each iteration,
    and the forward pass that scores a run's last iterate, through ``torch.compile`` (never the
    loop; see ``iteration``). The loss is the ``objective``'s attack loss against ``reference``
    (computed here when ``None``); success always means misclassifying ``y``.
    """
    ref = objective.reference(model, x, y) if reference is None else reference
    zero = player.zero(x)
    best_delta = zero
    best_loss = torch.full((x.shape[0],), -torch.inf, device=x.device)
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    best_wrong = found
    first = zero

    def record(delta: Tensor, losses: Tensor, logits: Tensor) -> None:
        nonlocal best_delta, best_loss, best_wrong, found, first
        better = losses > best_loss
        wrong = logits.argmax(dim=1) != y
        best_delta = _where(better, delta, best_delta)
        best_loss = torch.where(better, losses, best_loss)
        best_wrong = torch.where(better, wrong, best_wrong)
        if keep == "first-success":
            first = _where(wrong & ~found, delta, first)
            found = found | wrong

    step = iteration(pgd_iteration, compiled)
    score = iteration(pgd_score, compiled)
    checking = debug.enabled()
    for run in range(restarts + 1):
        if run == 0:
            delta = (
                zero
                if not objective.jitter
                else player.project(x, start(objective, zero, generator), eps)
            )
        else:
            delta = player.init(x, eps, generator)
        if checking and run > 0:
            where = f"the random start of restart {run}"
            debug.check_step(player, x, delta, eps, where, made_by="init")
        for t in range(steps):
            noise = player.draw(x, generator)
            following, losses, logits = step(
                model, player, x, ref, delta, eps, alpha, noise, objective
            )
            if checking:
                debug.check_step(player, x, following, eps, f"PGD step {t + 1} of run {run}")
            record(delta, losses, logits)
            if keep == "first-success" and bool(found.all()):
                break
            delta = following
        else:
            with torch.no_grad():
                record(delta, *score(model, player, x, ref, delta, objective))
        if keep == "first-success" and bool(found.all()):
            break

    if keep == "max-loss" and bool(torch.isfinite(best_loss).all()):
        return PGDResult(best_delta, best_loss, best_wrong)  # recorded: no forward pass needed
    with torch.no_grad():
        delta = _where(found, first, best_delta) if keep == "first-success" else best_delta
        loss, logits = score(model, player, x, ref, delta, objective)
        return PGDResult(delta, loss, logits.argmax(dim=1) != y)


def check_batch(model: nn.Module, x: object, y: object, players: tuple[Player, ...]) -> None:
    """All checks of a batch before an attack: inputs, players, and one clean forward."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, got {type(model).__name__}; wrap a function in "
            "an nn.Module whose forward calls it"
        )
    _checks.inputs(x, y)
    assert isinstance(x, Tensor) and isinstance(y, Tensor)
    for p in players:
        p.check_input(x)
    with torch.no_grad(), frozen_model(model):
        _checks.logits(_checks.forward(model, x), y)


@dataclasses.dataclass(frozen=True)
class PGD:
    """Projected gradient ascent on the cross-entropy with one player.

    Build it with ``pgd``; call it as ``attack(model, x, y, seed=0)``.

    Attributes:
        player: the threat model.
        steps: iterations per run (``None``: the player's ``steps``).
        restarts: random restarts after the run from zero (``None``: the player's ``restarts``).
        keep: ``"max-loss"`` (training) or ``"first-success"`` (evaluation).
    """

    player: Player
    steps: int | None = None
    restarts: int | None = None
    keep: str = "max-loss"

    def __post_init__(self) -> None:
        check_players((self.player,))
        if self.steps is not None:
            _checks.integer_at_least("steps", self.steps, 1)
        if self.restarts is not None:
            _checks.integer_at_least("restarts", self.restarts, 0)
        _checks.one_of("keep", self.keep, KEEP)

    def __call__(
        self,
        model: nn.Module,
        x: Shaped[Tensor, " b *s"],
        y: Shaped[Tensor, " n"],
        *,
        eps: Budget | None = None,
        alpha: Budget | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, " b *s"]:
        """Adversarial inputs of ``x``'s shape and dtype.

        Args:
            model: a classifier returning logits ``[b, classes]``; left exactly as found.
            x: inputs in [0, 1].
            y: int64 class labels ``[b]``.
            eps: override the player's budget (a number or a tensor ``[b]``).
            alpha: override the player's step size (a number or a tensor ``[b]``).
            seed: seed of the random restarts (and the l_1 step's random k).
            generator: a ``torch.Generator`` on ``x``'s device, instead of ``seed``.

        Raises:
            TypeError, ValueError: for bad inputs, before any attack step.
        """
        return self.run(model, x, y, eps=eps, alpha=alpha, seed=seed, generator=generator).delta

    def run(
        self,
        model: nn.Module,
        x: Shaped[Tensor, " b *s"],
        y: Shaped[Tensor, " n"],
        *,
        eps: Budget | None = None,
        alpha: Budget | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> PGDResult:
        """Like calling the attack, but returns a ``PGDResult`` whose ``delta`` is replaced
        by the adversarial input, with its per-example loss and success."""
        check_batch(model, x, y, (self.player,))
        _checks.seed("seed", seed)
        _checks.generator(generator, x)
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        eps_t = _checks.budget_tensor("eps", self.player.eps if eps is None else eps, x)
        alpha_t = _checks.budget_tensor("alpha", self.player.alpha if alpha is None else alpha, x)
        g = generator if generator is not None else make_generator(x.device, seed)
        with frozen_model(model):
            result = run_pgd(
                model,
                self.player,
                x,
                y,
                eps=eps_t,
                alpha=alpha_t,
                steps=self.player.steps if self.steps is None else self.steps,
                restarts=self.player.restarts if self.restarts is None else self.restarts,
                generator=g,
                keep=self.keep,
            )
        x_adv = self.player.apply(x, result.delta).detach().to(x.dtype)
        return result._replace(delta=x_adv)


def pgd(
    player: Player, steps: int | None = None, restarts: int | None = None, keep: str = "max-loss"
) -> PGD:
    """PGD with one player (paper Sec. 3): ``pgd(mr.linf)(model, x, y)`` returns adversarial inputs.

    Args:
        player: the threat model.
        steps: iterations per run; ``None`` takes the player's.
        restarts: random restarts after the run from zero; ``None`` takes the player's.
        keep: per example, keep the highest-loss perturbation (``"max-loss"``, training) or the
            first one that misclassifies (``"first-success"``, evaluation).

    Returns:
        A frozen, picklable ``PGD`` attack.

    Examples:
        >>> import torch, multirobust as mr
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> x_adv = mr.pgd(mr.linf(eps=0.1, alpha=0.02), steps=5)(model, x, y, seed=0)
        >>> bool(((x_adv - x).abs() <= 0.1 + 1e-6).all())
        True
    """
    return PGD(player, steps, restarts, keep)
