"""The paper's settings per dataset, and games, models, optimisers and schedules made from them.

Examples:
    >>> s = paper_settings("cifar10")
    >>> [p.name for p in s.players], s.msd_steps, s.batch_size
    (['linf', 'l2', 'l1'], 50, 128)
    >>> make_game(s.players, method="msd", adaptive="l2", msd_steps=s.msd_steps).norm
    'l2'
"""

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

import multirobust as mr
from multirobust import _checks, budgets
from multirobust.models import MnistCNN, PreActResNet18

METHODS = ("max", "avg", "msd")
ADAPTIVE = ("none", "l1", "l2")


@dataclasses.dataclass(frozen=True)
class Settings:
    """A dataset's training and evaluation settings (the paper's; docs/recipes/index.md).

    Attributes:
        players: the training players (budgets, step sizes, iterations, restarts).
        msd_steps: MSD iterations.
        eval_steps: PGD iterations per player name at evaluation.
        eval_restarts: PGD restarts at evaluation.
        batch_size: training batch size.
        epochs: training epochs.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        weight_decay: the optimiser's weight decay.
        lr_epochs: epochs of the knots of the piecewise-linear learning-rate schedule.
        lr_values: learning rates at those knots.
    """

    players: tuple[mr.Player, ...]
    msd_steps: int
    eval_steps: dict[str, int]
    eval_restarts: int
    batch_size: int
    epochs: int
    optimizer: str
    weight_decay: float
    lr_epochs: tuple[float, ...]
    lr_values: tuple[float, ...]


def paper_settings(dataset: str) -> Settings:
    """The paper's settings for ``"mnist"``, ``"cifar10"`` or ``"cifar100"`` (App. C; where the
    paper is silent, the library's choices, as the Recipes page lists them).

    MNIST trains with 2 runs per player (one from zero, one random restart), CIFAR with none, as the
    MSD code. The l_1 player's k range is ``[5, 20]`` on every dataset (the MSD code's CIFAR-10
    value; the paper gives none for MNIST).
    """
    if dataset == "mnist":
        return Settings(
            players=(
                mr.linf(eps=0.3, alpha=0.01, steps=50, restarts=1),
                mr.l2(eps=2.0, alpha=0.1, steps=100, restarts=1),
                mr.l1(eps=10.0, alpha=0.8, steps=50, restarts=1),
            ),
            msd_steps=100,
            eval_steps={"linf": 100, "l2": 200, "l1": 100},
            eval_restarts=10,
            batch_size=100,
            epochs=15,
            optimizer="adam",
            weight_decay=0.0,
            lr_epochs=(0, 6, 15),
            lr_values=(0.0, 1e-3, 0.0),
        )
    if dataset in ("cifar10", "cifar100"):
        return Settings(
            players=(mr.linf, mr.l2, mr.l1),
            msd_steps=50,
            eval_steps={"linf": 100, "l2": 500, "l1": 100},
            eval_restarts=10,
            batch_size=128,
            epochs=50,
            optimizer="sgd",
            weight_decay=5e-4,
            lr_epochs=(0, 20, 40, 50),
            lr_values=(0.0, 0.1, 0.005, 0.0),
        )
    raise ValueError(f"dataset must be one of 'mnist', 'cifar10', 'cifar100'; got {dataset!r}")


def make_game(
    players: Iterable[mr.Player],
    method: str,
    adaptive: str = "none",
    msd_steps: int = 50,
    timing: str = "same-batch",
    track_domination: bool = False,
) -> Any:
    """A game by name: ``method`` in max/avg/msd, ``adaptive`` in none/l1/l2 (the gradient norm).

    Returns ``mr.fixed(aggregator)`` or ``mr.adaptive(aggregator, norm=adaptive, timing=timing)``.

    Examples:
        >>> import multirobust as mr
        >>> make_game([mr.linf, mr.l2], "max", "none").aggregator.names
        ('linf', 'l2')
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if adaptive not in ADAPTIVE:
        raise ValueError(f"adaptive must be one of {', '.join(ADAPTIVE)}; got {adaptive!r}")
    # Also when adaptive="none": a typo is an error.
    _checks.one_of("timing", timing, budgets.TIMINGS)
    _checks.integer_at_least("msd_steps", msd_steps, 1)
    players = tuple(players)
    agg = {"max": mr.max_, "avg": mr.avg}.get(method)
    aggregator = agg(*players) if agg is not None else mr.msd(*players, steps=msd_steps)
    if adaptive == "none":
        return mr.fixed(aggregator, track_domination=track_domination)
    return mr.adaptive(aggregator, norm=adaptive, timing=timing)


def paper_model(dataset: str) -> nn.Module:
    """The paper's model: the MNIST CNN, or PreAct ResNet-18 with 10 or 100 classes."""
    if dataset == "mnist":
        return MnistCNN()
    if dataset in ("cifar10", "cifar100"):
        return PreActResNet18(classes=10 if dataset == "cifar10" else 100)
    raise ValueError(f"dataset must be one of 'mnist', 'cifar10', 'cifar100'; got {dataset!r}")


def make_optimizer(model: nn.Module, settings: Settings) -> torch.optim.Optimizer:
    """The settings' optimiser (its learning rate is set by the schedule)."""
    if settings.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=1.0, weight_decay=settings.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=1.0, momentum=0.9, weight_decay=settings.weight_decay
    )


def paper_schedule(
    optimizer: torch.optim.Optimizer, settings: Settings, epochs: int, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """The settings' piecewise-linear learning rate, its knots scaled from the paper's epochs to
    ``epochs`` (a longer run warms up and decays over longer, never idling at the final rate).

    Examples:
        >>> opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        >>> sched = paper_schedule(opt, paper_settings("cifar10"), 25, steps_per_epoch=1)
        >>> lrs = []
        >>> for _ in range(25):
        ...     lrs.append(opt.param_groups[0]["lr"])
        ...     opt.step()
        ...     sched.step()
        >>> lrs.index(max(lrs)), round(max(lrs), 3)  # the paper's peak: epoch 20 of 50
        (10, 0.1)
    """
    _checks.integer_at_least("epochs", epochs, 1)
    knots = [e * epochs / settings.epochs for e in settings.lr_epochs]
    return mr.piecewise_linear(optimizer, knots, list(settings.lr_values), steps_per_epoch)
