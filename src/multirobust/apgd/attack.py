"""``apgd(player, steps, restarts, loss)``: Auto-PGD over the ``Player`` protocol.

APGD (Croce & Hein, ICML 2020) is PGD with momentum whose step size halves at checkpoints when
the loss stopped rising, restarting from the best point; APGD-L1 (Croce & Hein, ICML 2021) steps
sparsely with a sparsity that follows the best point's support. The schedule's decisions are
tensors per example, so the iteration loop never waits on the device.
"""

import dataclasses

import torch
from jaxtyping import Shaped
from torch import Tensor, nn

from multirobust import _checks, debug
from multirobust._compile import COMPILE_MODES, Compile, iteration
from multirobust.apgd import losses as L
from multirobust.apgd import steps as S
from multirobust.attacks import KEEP, PGDResult, check_batch, frozen_model, make_generator
from multirobust.objectives import Objective
from multirobust.objectives import start as jittered
from multirobust.players import Budget, Player, check_players

STARTS = ("zero", "random")
"""Where APGD's first run starts: the player's ``zero`` or its random ``init``."""


def _where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.reshape(-1, *([1] * (a.dim() - 1))), a, b)


def _evaluate(model, player, x, ref, delta, objective):
    """``(grad, per-example loss, logits)`` at ``delta``, from ``torch.func.grad`` of the summed
    loss (each example's gradient independent of the batch)."""

    def summed(d: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        logits = model(player.apply(x, d))
        losses = objective.attack_loss(logits, ref)
        return losses.sum(), (losses.detach(), logits.detach())

    with torch.no_grad():  # no graph kept through the model's parameters
        g, (losses, logits) = torch.func.grad(summed, has_aux=True)(delta)
    return g, losses, logits


def _score(model, player, x, ref, delta, objective):
    logits = model(player.apply(x, delta))
    return objective.attack_loss(logits, ref), logits


def _generic(model, player, x, ref, delta, previous, grad, eta, eps, a, noise, objective):
    following = S.generic_step(player, x, delta, previous, grad, eta, eps, a, noise)
    return (following, *_evaluate(model, player, x, ref, following, objective))


def _sparse(model, player, step, x, ref, delta, grad, eta, k, eps, objective):
    following = step(x, delta, grad, eta, k, eps)
    return (following, *_evaluate(model, player, x, ref, following, objective))


@dataclasses.dataclass
class _Run:
    """What one run found per example: the best point, and the first misclassifying one."""

    best: Tensor
    best_loss: Tensor
    best_wrong: Tensor
    first: Tensor
    first_loss: Tensor
    found: Tensor


@torch.no_grad()
def _one_run(
    model: nn.Module,
    player: Player,
    x: Tensor,
    y: Tensor,
    ref: Tensor,
    eps: Tensor,
    *,
    steps: int,
    sparse: object | None,
    rho: float,
    momentum: float,
    step_size: float,
    generator: torch.Generator | None,
    objective: L.AttackLoss,
    compiled: Compile,
    from_zero: bool,
) -> _Run:
    """One APGD run on a batch, from ``player.zero`` or ``player.init``; ``eps`` is ``[b]``."""
    evaluate = iteration(_evaluate, compiled)
    score = iteration(_score, compiled)
    step = iteration(_sparse if sparse is not None else _generic, compiled)
    checking = debug.enabled()
    n = x[0].numel()
    eta0 = step_size * eps
    eta = eta0
    if from_zero:
        delta = player.zero(x)
        if isinstance(objective, Objective) and objective.jitter:  # a loss flat at x (TRADES')
            delta = player.project(x, jittered(objective, delta, generator), eps)  # type: ignore[arg-type]
    else:
        delta = player.init(x, eps, generator)
        if checking:
            debug.check_step(player, x, delta, eps, "APGD's random start", made_by="init")
    grad, loss, logits = evaluate(model, player, x, ref, delta, objective)
    wrong = logits.argmax(dim=1) != y
    run = _Run(delta, loss, wrong, delta, loss, wrong)
    best_grad = grad
    previous = delta
    marks = S.sparse_checkpoints(steps) if sparse is not None else S.checkpoints(steps)
    rises = torch.zeros_like(loss)
    best_at_mark, reduced, last_mark = loss, torch.zeros_like(wrong), 0
    k, support_at_mark = S.first_sparsity(x), torch.full_like(loss, float(n))
    first_a = torch.ones((), device=x.device, dtype=x.dtype)
    a = torch.tensor(momentum, device=x.device, dtype=x.dtype)
    for t in range(steps):
        if t == steps - 1:  # the last iterate needs its loss, not its gradient
            following = (
                S.generic_step(
                    player,
                    x,
                    delta,
                    previous,
                    grad,
                    eta,
                    eps,
                    a if t else first_a,
                    player.draw(x, generator),
                )
                if sparse is None
                else sparse(x, delta, grad, eta, k, eps)  # type: ignore[operator]
            )
            new_loss, logits = score(model, player, x, ref, following, objective)
        elif sparse is None:
            noise = player.draw(x, generator)
            following, grad, new_loss, logits = step(
                model,
                player,
                x,
                ref,
                delta,
                previous,
                grad,
                eta,
                eps,
                a if t else first_a,
                noise,
                objective,
            )
        else:
            following, grad, new_loss, logits = step(
                model, player, sparse, x, ref, delta, grad, eta, k, eps, objective
            )
        if checking:
            debug.check_step(player, x, following, eps, f"APGD step {t + 1}")
        previous, delta = delta, following
        rises = rises + (new_loss > loss)
        loss = new_loss
        better = loss > run.best_loss
        wrong = logits.argmax(dim=1) != y
        run.best = _where(better, delta, run.best)
        best_grad = _where(better, grad, best_grad)
        run.best_loss = torch.where(better, loss, run.best_loss)
        run.best_wrong = torch.where(better, wrong, run.best_wrong)
        news = wrong & ~run.found
        run.first = _where(news, delta, run.first)
        run.first_loss = torch.where(news, loss, run.first_loss)
        run.found = run.found | wrong
        if t + 1 not in marks:
            continue
        if sparse is not None:
            support = S.support(run.best, eps).to(loss.dtype)
            reset = support < S.SPARSE_SUPPORT_DROP * support_at_mark
            k = S.sparsity(support, n)
            shrunk = eta / S.SPARSE_STEP_SHRINK
            eta = torch.where(reset, eta0, shrunk).clamp(eta0 * S.SPARSE_MIN_STEP, eta0)
            support_at_mark = support
        else:
            # Croce & Hein 2020, Eq. (8): too few rises since the last checkpoint, or the step was
            # kept there and the best loss has not improved since.
            too_few = rises < rho * (t + 1 - last_mark)
            stalled = ~reduced & (run.best_loss <= best_at_mark)
            reset = too_few | stalled
            eta = torch.where(reset, eta / 2, eta)
            reduced, best_at_mark, last_mark = reset, run.best_loss, t + 1
            rises = torch.zeros_like(rises)
        delta = _where(reset, run.best, delta)
        grad = _where(reset, best_grad, grad)
        loss = torch.where(reset, run.best_loss, loss)
    return run


@torch.no_grad()
def run_apgd(
    model: nn.Module,
    player: Player,
    x: Tensor,
    y: Tensor,
    *,
    eps: Budget,
    steps: int,
    restarts: int,
    generator: torch.Generator | None,
    loss: str | Objective = "ce",
    targets: int = 1,
    keep: str = "first-success",
    rho: float = 0.75,
    momentum: float = 0.75,
    step: str = "auto",
    step_size: float | None = None,
    compiled: Compile = False,
    start: str = "zero",
) -> PGDResult:
    """APGD without checks: the caller validated the arguments and froze the model.

    ``restarts + 1`` runs of ``steps`` iterations per target class, the first from
    ``player.zero`` (``start="zero"``) or ``player.init`` (``"random"``), the others from
    ``player.init``, per target class
    (``targets`` of them for ``"dlr-targeted"``, the runner-up classes of the clean logits).
    ``keep="first-success"`` attacks in each run only the examples not yet misclassified and
    keeps the first misclassifying point found, else the highest-loss one; ``"max-loss"`` keeps
    the highest-loss point of every run. ``result.delta`` is the player's state.
    """
    sparse = S.choose_step(player, step)
    size = step_size if step_size is not None else (1.0 if sparse is not None else 2.0)
    objective = L.OBJECTS[loss] if isinstance(loss, str) else loss
    b = x.shape[0]
    eps_b = torch.as_tensor(eps, device=x.device, dtype=x.dtype).expand(b)
    clean = model(x) if loss == "dlr-targeted" else None
    base = objective.reference(model, x, y) if not isinstance(loss, str) else y
    kept = _Run(
        player.zero(x),
        torch.full((b,), -torch.inf, device=x.device),
        torch.zeros(b, dtype=torch.bool, device=x.device),
        player.zero(x),
        torch.full((b,), -torch.inf, device=x.device),
        torch.zeros(b, dtype=torch.bool, device=x.device),
    )
    settings = dict(
        steps=steps,
        sparse=sparse,
        rho=rho,
        momentum=momentum,
        step_size=size,
        generator=generator,
        objective=objective,
        compiled=compiled,
    )
    for rank in range(targets):
        ref = base
        if clean is not None:
            ref = torch.stack([y, L.target_classes(clean, y, rank)], dim=1)
        for r in range(restarts + 1):
            idx = None
            if keep == "first-success":
                if bool(kept.found.all()):
                    break
                if bool(kept.found.any()):
                    idx = (~kept.found).nonzero().squeeze(1)
            parts = (x, y, ref, eps_b) if idx is None else (x[idx], y[idx], ref[idx], eps_b[idx])
            run = _one_run(model, player, *parts, **settings, from_zero=start == "zero" and r == 0)  # type: ignore[arg-type]
            _merge(kept, run, idx)
    delta = _where(kept.found, kept.first, kept.best) if keep == "first-success" else kept.best
    if keep == "first-success":
        return PGDResult(
            delta, torch.where(kept.found, kept.first_loss, kept.best_loss), kept.found
        )
    return PGDResult(delta, kept.best_loss, kept.best_wrong)


def _merge(kept: _Run, run: _Run, idx: Tensor | None) -> None:
    """Fold one run (on the examples ``idx``, or all) into what the attack keeps."""
    if idx is None:
        better = run.best_loss > kept.best_loss
        kept.best = _where(better, run.best, kept.best)
        kept.best_loss = torch.where(better, run.best_loss, kept.best_loss)
        kept.best_wrong = torch.where(better, run.best_wrong, kept.best_wrong)
        news = run.found & ~kept.found
        kept.first = _where(news, run.first, kept.first)
        kept.first_loss = torch.where(news, run.first_loss, kept.first_loss)
        kept.found = kept.found | run.found
        return
    full = _Run(
        kept.best.index_copy(0, idx, run.best),
        kept.best_loss.index_copy(0, idx, run.best_loss),
        kept.best_wrong.index_copy(0, idx, run.best_wrong),
        kept.first.index_copy(0, idx, run.first),
        kept.first_loss.index_copy(0, idx, run.first_loss),
        kept.found.index_copy(0, idx, run.found),
    )
    selected = torch.zeros_like(kept.found).index_fill(0, idx, True)
    better = selected & (full.best_loss > kept.best_loss)
    kept.best = _where(better, full.best, kept.best)
    kept.best_loss = torch.where(better, full.best_loss, kept.best_loss)
    kept.best_wrong = torch.where(better, full.best_wrong, kept.best_wrong)
    news = selected & full.found & ~kept.found
    kept.first = _where(news, full.first, kept.first)
    kept.first_loss = torch.where(news, full.first_loss, kept.first_loss)
    kept.found = kept.found | news


@dataclasses.dataclass(frozen=True)
class APGD:
    """Auto-PGD with one player; build it with ``apgd`` and call it as ``attack(model, x, y)``.

    Attributes are ``apgd``'s arguments.
    """

    player: Player
    steps: int = 100
    restarts: int = 0
    loss: str | Objective = "ce"
    keep: str = "first-success"
    targets: int | None = None
    rho: float = 0.75
    momentum: float = 0.75
    step: str = "auto"
    step_size: float | None = None
    compiled: Compile = False
    start: str = "zero"

    def __post_init__(self) -> None:
        check_players((self.player,))
        _checks.integer_at_least("steps", self.steps, 1)
        _checks.integer_at_least("restarts", self.restarts, 0)
        if isinstance(self.loss, str):
            _checks.one_of("loss", self.loss, L.LOSSES)
        elif not isinstance(self.loss, Objective):
            raise TypeError(
                f"loss must be one of {', '.join(map(repr, L.LOSSES))} or an Objective "
                f"(e.g. mr.trades()), got {type(self.loss).__name__}"
            )
        if self.targets is not None:
            if self.loss != "dlr-targeted":
                raise ValueError(
                    f"targets is for loss='dlr-targeted', got targets={self.targets!r} with "
                    f"loss={self.loss!r}; drop targets or pass loss='dlr-targeted'"
                )
            _checks.integer_at_least("targets", self.targets, 1)
        _checks.one_of("keep", self.keep, KEEP)
        for name in ("rho", "momentum"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
        _checks.one_of("step", self.step, S.STEPS)
        if self.step_size is not None:
            _checks.positive_finite("step_size", self.step_size)
        if self.compiled is not False and self.compiled is not True:
            _checks.one_of("compiled", self.compiled, COMPILE_MODES)
        _checks.one_of("start", self.start, STARTS)
        S.choose_step(self.player, self.step)  # a bad sparse_step or step='sparse' fails here

    def __call__(
        self,
        model: nn.Module,
        x: Shaped[Tensor, " b *s"],
        y: Shaped[Tensor, " n"],
        *,
        eps: Budget | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Shaped[Tensor, " b *s"]:
        """Adversarial inputs of ``x``'s shape and dtype (see ``run``)."""
        return self.run(model, x, y, eps=eps, seed=seed, generator=generator).delta

    def run(
        self,
        model: nn.Module,
        x: Shaped[Tensor, " b *s"],
        y: Shaped[Tensor, " n"],
        *,
        eps: Budget | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> PGDResult:
        """The adversarial inputs (as ``delta``), with the attack's loss there and success.

        Args:
            model: a classifier returning logits ``[b, classes]``; left exactly as found.
            x: inputs in [0, 1].
            y: int64 class labels ``[b]``.
            eps: override the player's budget (a number or a tensor ``[b]``).
            seed: seed of the random starts.
            generator: a ``torch.Generator`` on ``x``'s device, instead of ``seed``.

        Raises:
            TypeError, ValueError: for bad inputs, or a loss the model has too few classes for,
                before any attack step.
        """
        check_batch(model, x, y, (self.player,))
        _checks.seed("seed", seed)
        _checks.generator(generator, x)
        if seed is not None and generator is not None:
            raise ValueError("pass either seed or generator, not both")
        eps_t = _checks.budget_tensor("eps", self.player.eps if eps is None else eps, x)
        g = generator if generator is not None else make_generator(x.device, seed)
        with frozen_model(model):
            targets = 1
            if isinstance(self.loss, str):
                with torch.no_grad():
                    classes = model(x[:1]).shape[1]
                targets = L.check_classes(self.loss, classes, self.targets)
            result = run_apgd(
                model,
                self.player,
                x,
                y,
                eps=eps_t,
                steps=self.steps,
                restarts=self.restarts,
                generator=g,
                loss=self.loss,
                targets=targets,
                keep=self.keep,
                rho=self.rho,
                momentum=self.momentum,
                step=self.step,
                step_size=self.step_size,
                compiled=self.compiled,
                start=self.start,
            )
        x_adv = self.player.apply(x, result.delta).detach().to(x.dtype)
        return result._replace(delta=x_adv)


def apgd(
    player: Player,
    steps: int = 100,
    restarts: int = 0,
    loss: str | Objective = "ce",
    *,
    keep: str = "first-success",
    targets: int | None = None,
    rho: float = 0.75,
    momentum: float = 0.75,
    step: str = "auto",
    step_size: float | None = None,
    compiled: Compile = False,
    start: str = "zero",
) -> APGD:
    """Auto-PGD with one player: ``apgd(mr.linf(eps=8/255))(model, x, y, seed=0)``.

    ``restarts + 1`` runs of ``steps`` steps: the first from the clean input (as ``pgd``; or a
    random start, ``start="random"``, as AutoAttack), the others from ``player.init``
    (AutoAttack's ``n_restarts`` is ``restarts + 1``). Any player works: the step is
    ``project(ascend(delta, grad, eta))`` combined with momentum 0.75 and projected again, with a
    step size ``eta`` per example starting at ``2 * eps`` and halved at the checkpoints
    ``steps.checkpoints`` when the loss rose in fewer than ``rho`` of the iterations since the
    last one or stalled, the run then going on from its best point. l_1 players (and players
    implementing ``SparseStepPlayer``) take APGD-L1's sparse step instead, without momentum,
    from a step size ``eps``.

    Args:
        player: the threat model.
        steps: iterations per run.
        restarts: random restarts after the first run.
        loss: ``"ce"``, ``"dlr"`` (3 classes or more), ``"dlr-targeted"`` (4 or more; one set
            of runs per target class), or an ``Objective`` such as ``mr.trades()``.
        keep: ``"first-success"`` (evaluation: the first misclassifying point, else the
            highest-loss one; later runs attack only the examples still classified correctly)
            or ``"max-loss"`` (the highest-loss point over all runs).
        targets: target classes of ``"dlr-targeted"`` (``None``: 9, or all but the label if
            fewer), the classes with the largest clean logits other than the label.
        rho: the share of rising iterations below which the step size halves.
        momentum: weight of the new step against the last one.
        step: ``"auto"``, ``"generic"`` (the player's ``ascend`` even for l_1) or ``"sparse"``.
        step_size: the first step size as a multiple of ``eps`` (``None``: 2, or 1 sparse).
        compiled: run each iteration through ``torch.compile`` (``True`` or a mode).
        start: where the first run starts: ``"zero"`` (``player.zero``) or ``"random"``.

    Returns:
        A frozen ``APGD`` attack.

    Examples:
        >>> import torch, multirobust as mr
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 2])
        >>> x_adv = apgd(mr.l2(eps=0.5), steps=10)(model, x, y, seed=0)
        >>> bool(((x_adv - x).flatten(1).norm(dim=1) <= 0.5 + 1e-6).all())
        True
    """
    return APGD(
        player,
        steps,
        restarts,
        loss,
        keep,
        targets,
        rho,
        momentum,
        step,
        step_size,
        compiled,
        start,
    )
