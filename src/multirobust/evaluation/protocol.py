"""The paper's PGD protocol on one batch: a run from zero, then random restarts, first success.

Examples:
    >>> import torch, multirobust as mr
    >>> from multirobust.attacks import make_generator
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(6, 1, 2, 2), torch.randint(0, 3, (6,))
    >>> ok = _pgd_correct(model, mr.linf(eps=0.1), x, y, eps=0.1, alpha=0.05, steps=3,
    ...                   restarts=1, generator=make_generator(torch.device("cpu"), 0))
    >>> ok.shape, ok.dtype
    (torch.Size([6]), torch.bool)
"""

import torch
from torch import Tensor, nn

from multirobust import debug
from multirobust.attacks import pgd
from multirobust.players import Budget, Player


class _RandomStart:
    """``player`` whose unperturbed state is a random start: one restart as a run of its own."""

    def __init__(
        self, player: Player, eps: Budget, generator: torch.Generator, restart: int
    ) -> None:
        self.player, self._eps, self._generator, self._restart = player, eps, generator, restart
        self.name, self.eps, self.alpha = player.name, player.eps, player.alpha
        self.steps, self.restarts = player.steps, player.restarts

    def check_input(self, x: Tensor) -> None:
        self.player.check_input(x)

    def draw(self, x: Tensor, generator: torch.Generator | None) -> Tensor | None:
        return self.player.draw(x, generator)

    def zero(self, x: Tensor) -> Tensor:
        delta = self.player.init(x, self._eps, self._generator)
        # run_pgd checks the random starts of its own restarts only, not a run's start.
        where = f"the random start of restart {self._restart}"
        debug.check_step(self.player, x, delta, self._eps, where, made_by="init")
        return delta

    def init(self, x: Tensor, eps: Budget, generator: torch.Generator | None) -> Tensor:
        return self.player.init(x, eps, generator)

    def ascend(
        self,
        x: Tensor,
        delta: Tensor,
        grad: Tensor,
        alpha: Budget,
        noise: Tensor | None,
    ) -> Tensor:
        return self.player.ascend(x, delta, grad, alpha, noise)

    def project(self, x: Tensor, delta: Tensor, eps: Budget) -> Tensor:
        return self.player.project(x, delta, eps)

    def size(self, delta: Tensor) -> Tensor:
        return self.player.size(delta)

    def apply(self, x: Tensor, delta: Tensor) -> Tensor:
        return self.player.apply(x, delta)


def _pgd_correct(
    model: nn.Module,
    player: Player,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    alpha: float,
    steps: int,
    restarts: int,
    generator: torch.Generator,
) -> Tensor:
    """Still correct after the run from zero and every restart (first success, docs/evaluation.md).

    Each restart runs only on the examples no earlier run broke, as AutoAttack does; per example
    this is the same attack as ``pgd(player, steps, restarts, keep="first-success")``.
    """
    result = pgd(player, steps, 0, keep="first-success").run(
        model, x, y, eps=eps, alpha=alpha, generator=generator
    )
    correct = ~result.success
    del result
    for restart in range(1, restarts + 1):
        idx = correct.nonzero().flatten()
        if idx.numel() == 0:
            break
        start = _RandomStart(player, eps, generator, restart)
        result = pgd(start, steps, 0, keep="first-success").run(  # type: ignore[arg-type]
            model, x[idx], y[idx], eps=eps, alpha=alpha, generator=generator
        )
        correct[idx] = ~result.success
        del result
    return correct
