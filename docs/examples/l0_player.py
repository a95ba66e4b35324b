"""A new threat model for multirobust: the l_0 player, which changes at most ``eps`` pixels.

This file is the worked example of the guide "Defining a new threat-model player"
(``docs/guide/new-player.md``); the test suite imports it and runs :func:`demo`.

The l_0 player is additive (``x + delta``): it subclasses ``mr.AdditivePlayer``, which supplies
``zero``, ``draw``, ``apply``, the box clip ``box``, the checks of the common settings and
``player(**changes)``, so it shares the perturbation space of the built-in l_inf, l_2 and l_1
players and works in every aggregator, MSD included. Its budget ``eps`` counts pixels (a pixel is
perturbed when any of its channels is); it is a float, as every budget is, and a budget policy may
scale it (AdaptiveBudget's clamp gives ``[0.5, 2] * eps``): the projection keeps ``floor(eps)``
pixels.

Run it: ``python docs/examples/l0_player.py`` trains a small CNN on scikit-learn's digits with
MSD + AdaptiveBudget over an l_inf and this l_0 player, then prints robust accuracies.
"""

import dataclasses
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

import multirobust as mr
from multirobust import Budget
from multirobust.players import per_example


# --8<-- [start:player]
@dataclasses.dataclass(frozen=True)
class L0(mr.AdditivePlayer):
    """Changes at most ``floor(eps)`` pixels; a step moves the steepest coordinate by alpha."""

    eps: float = 5.0
    alpha: float = 0.5
    steps: int = 20
    restarts: int = 0
    name: str = "l0"

    def check_input(self, x: Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"{self.name} needs images [b, c, h, w], got shape {list(x.shape)}")

    def init(self, x: Tensor, eps: Budget, generator: torch.Generator | None) -> Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.project(x, 2 * u - 1, eps)  # uniform noise on a random floor(eps) pixels

    def ascend(self, x: Tensor, delta: Tensor, grad: Tensor, alpha: Budget, noise: None) -> Tensor:
        peak = grad.flatten(1).abs().amax(dim=1)  # no randomness: draw gives noise=None
        return delta + per_example(alpha, x) * grad / per_example(peak.where(peak > 0, 1.0), x)

    def project(self, x: Tensor, delta: Tensor, eps: Budget) -> Tensor:
        boxed = self.box(x, delta)  # exact: keep the pixels whose boxed value saves the most
        gain = (delta.square() - (boxed - delta).square()).sum(dim=1, keepdim=True)
        rank = gain.flatten(1).argsort(dim=1, descending=True).argsort(dim=1).view_as(gain)
        return boxed * (rank < per_example(eps, x).floor())

    def size(self, delta: Tensor) -> Tensor:
        return (delta.abs().amax(dim=1) > 0).flatten(1).sum(dim=1).to(delta.dtype)


l0 = L0()
"""The l_0 player with its defaults; call it with keywords to change them: ``l0(eps=10)``."""
# --8<-- [end:player]


# --8<-- [start:demo]
def robust_accuracy(
    model: torch.nn.Module, x: Tensor, y: Tensor, players: list[Any], steps: int, seed: int = 0
) -> dict[str, float]:
    """Clean, per-player and All (union) robust accuracy with PGD, as fractions."""
    with torch.no_grad():
        correct = model.eval()(x).argmax(dim=1) == y
    out, survives_all = {"clean": float(correct.float().mean())}, correct.clone()
    for p in players:
        # keep="first-success": per example, the first perturbation that misclassifies.
        result = mr.pgd(p, steps=steps, keep="first-success").run(model, x, y, seed=seed)
        survives = correct & ~result.success
        out[p.name] = float(survives.float().mean())
        survives_all &= survives
    out["all"] = float(survives_all.float().mean())
    return out


def demo(
    aggregator: str = "msd",
    adaptive: bool = True,
    n_train: int = 512,
    n_test: int = 128,
    epochs: int = 1,
    steps: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Train a digits CNN against an l_inf and the l_0 player, then attack it with both.

    Args:
        aggregator: ``"msd"``, ``"max"`` or ``"avg"`` (the paper's MSD, MAX, AVG).
        adaptive: wrap the aggregator in the paper's AdaptiveBudget (l_2 gradient norm).
        n_train, n_test: how many digits to train and evaluate on.
        epochs: training epochs.
        steps: attack iterations in training and evaluation.
        seed: seed of the data split, the model and the attacks.

    Returns:
        The training history, the final budgets, and the robust accuracies.
    """
    from multirobust.data import digits
    from multirobust.models import DigitsCNN

    torch.manual_seed(seed)
    train, test = digits(seed=seed)
    players = [mr.linf(eps=0.1, alpha=0.025, steps=steps), l0(eps=4.0, alpha=0.5, steps=steps)]
    if aggregator == "msd":  # one shared perturbation: the players must all be additive
        agg = mr.msd(*players, steps=steps)
    elif aggregator == "max":
        agg = mr.max_(*players)
    elif aggregator == "avg":
        agg = mr.avg(*players)
    else:
        raise ValueError(f"aggregator must be 'msd', 'max' or 'avg', got {aggregator!r}")
    game = mr.adaptive(agg, norm="l2") if adaptive else mr.fixed(agg, track_domination=True)

    model = DigitsCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = mr.Trainer(model, optimizer, game, seed=seed, progress=False)
    loader = DataLoader(Subset(train, range(min(n_train, len(train)))), batch_size=64, shuffle=True)
    history = trainer.fit(loader, epochs=epochs)

    n_test = min(n_test, len(test))
    x, y = next(iter(DataLoader(Subset(test, range(n_test)), batch_size=n_test)))
    return {
        "history": history,
        "eps": history[-1]["eps"],
        "domination": mr.diagnostics.domination(history),
        "accuracy": robust_accuracy(model, x, y, players, steps=steps, seed=seed),
    }


if __name__ == "__main__":
    result = demo(epochs=3, n_train=10_000, n_test=10_000)  # all of digits
    print("budgets at the last step:", result["eps"])
    print(result["domination"])
    print({k: round(100 * v, 1) for k, v in result["accuracy"].items()})
# --8<-- [end:demo]
