"""A new threat model for multirobust: the l_0 player, which changes at most ``eps`` pixels.

This file is the worked example of the guide "Defining a new threat-model player"
(``docs/guide/new-player.md``); the test suite imports it and runs :func:`demo`.

The l_0 player is additive (``x + delta``), so it shares the perturbation space of the built-in
l_inf, l_2 and l_1 players and works in every aggregator, MSD included. Its budget ``eps`` counts
pixels (a pixel is perturbed when any of its channels is); it is a float, as every budget is, and a
budget policy may scale it (AdaptiveBudget's clamp gives ``[0.5, 2] * eps``): the projection keeps
``floor(eps)`` pixels.

Run it: ``python docs/examples/l0_player.py`` trains a small CNN on scikit-learn's digits with
MSD + AdaptiveBudget over an l_inf and this l_0 player, then prints robust accuracies.
"""

import dataclasses
from typing import Any

import torch
from einops import rearrange
from torch import Tensor
from torch.utils.data import DataLoader, Subset

import multirobust as mr
from multirobust.projections import clip_to_box

# --8<-- [start:player]
Budget = float | Tensor  # a number, a 0-d tensor, or one value per example [b]


def _per_pixel(value: Budget, x: Tensor) -> Tensor:
    """A budget as a tensor broadcastable against ``[b, pixels]``."""
    t = torch.as_tensor(value, device=x.device, dtype=x.dtype)
    return t.reshape(-1, 1) if t.dim() == 1 else t


@dataclasses.dataclass(frozen=True)
class L0:
    """The l_0 player: changes at most ``eps`` pixels of each image, each within [0, 1].

    Attributes:
        eps: the number of pixels the adversary may change (a float > 0; ``floor`` is used).
        alpha: step size: the largest per-coordinate move of one step.
        steps: default number of attack iterations.
        restarts: default number of random restarts after the run from ``delta = 0``.
        name: the player's name in a game.
    """

    eps: float = 5.0
    alpha: float = 0.5
    steps: int = 20
    restarts: int = 0
    name: str = "l0"

    def __post_init__(self) -> None:
        for field in ("eps", "alpha"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{self.name}.{field} must be a number > 0, got {value!r}")
            object.__setattr__(self, field, float(value))  # a Budget is a float, never an int

    def __call__(self, **changes: Any) -> "L0":
        """A copy with some settings changed, like the built-in players: ``l0(eps=10)``."""
        return dataclasses.replace(self, **changes)

    def check_input(self, x: Tensor) -> None:
        """Optional member: reject inputs that are not images ``[b, c, h, w]``, before attacking."""
        if x.dim() != 4:
            raise ValueError(f"{self.name} needs images [b, c, h, w], got shape {list(x.shape)}")

    def init(self, x: Tensor, eps: Budget, generator: torch.Generator | None = None) -> Tensor:
        """A random start: uniform noise on a random set of ``floor(eps)`` pixels."""
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.project(x, 2 * noise - 1, eps)

    def ascend(
        self,
        x: Tensor,
        delta: Tensor,
        grad: Tensor,
        alpha: Budget,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``delta + alpha * grad / max|grad|``: the steepest coordinate moves by ``alpha``."""
        scale = grad.flatten(1).abs().amax(dim=1)
        scale = torch.where(scale > 0, scale, 1.0).reshape(-1, 1, 1, 1)
        step = torch.as_tensor(alpha, device=x.device, dtype=x.dtype)
        step = step.reshape(-1, 1, 1, 1) if step.dim() == 1 else step
        return delta + step * grad / scale

    def project(self, x: Tensor, delta: Tensor, eps: Budget) -> Tensor:
        """The closest point with at most ``floor(eps)`` changed pixels and ``x + delta`` in [0, 1].

        Exact: clip every coordinate into the box, then keep the ``floor(eps)`` pixels whose
        clipped value removes the most squared distance to ``delta``; zero the others.
        """
        boxed = clip_to_box(x, delta)
        gain = delta.pow(2) - (boxed - delta).pow(2)  # what keeping a coordinate saves
        gain = rearrange(gain, "b c h w -> b (h w) c").sum(dim=2)
        k = _per_pixel(eps, x).floor()
        rank = gain.argsort(dim=1, descending=True).argsort(dim=1)  # 0 = most worth keeping
        keep = (rank < k).to(x.dtype)
        return boxed * rearrange(keep, "b (h w) -> b 1 h w", h=x.shape[2])

    def size(self, delta: Tensor) -> Tensor:
        """The number of changed pixels per example, ``[b]`` (in the units of ``eps``)."""
        changed = rearrange(delta, "b c h w -> b (h w) c").abs().amax(dim=2) > 0
        return changed.sum(dim=1).to(delta.dtype)

    def apply(self, x: Tensor, delta: Tensor) -> Tensor:
        """``x + delta`` in [0, 1]; the gradient passes straight through the clip.

        (``project`` already keeps ``x + delta`` in the box; the clip only removes rounding.)
        """
        z = x + delta
        return z.clamp(0, 1).detach() + (z - z.detach())


l0 = L0()
"""The l_0 player with its defaults; call it with keywords to change them."""
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
