"""A new budget policy for multirobust: budgets that equalise the players' robust losses.

Before each batch's attack, every player attacks the batch at its base budget (its own PGD, at the
Trainer's ``mr.Measure("before", gradients=False)``: losses only, no parameter gradients); a player
whose robust loss is above the players' mean gets a smaller budget, one below it a larger one:

    eps_p = eps0_p * clamp((mean_q L_q / L_p) ** power, lo, hi)

always relative to the base budgets ``eps0_p`` (never compounding), with step sizes scaled by the
same factor. A factor that is not a number (every loss zero) is 1, and a batch with a loss that is
not finite keeps the base budgets. It is the worked example of the guide "Defining a new budget
policy" (``docs/guide/new-policy.md``); ``tests/test_examples.py`` trains with it, resumes it and
runs it under torchrun.

Run it: ``python docs/examples/equal_losses.py`` trains a small CNN on scikit-learn's digits for
one clean epoch (the robust losses of an untrained model are all about log 10), then one epoch
with MAX over an l_inf, an l_2 and an l_1 player at these budgets, and prints the budgets' factors
and the players' losses over training, and the clean, per-player and All robust accuracies.
"""

import dataclasses
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

import multirobust as mr


# --8<-- [start:policy]
class EqualLossState(NamedTuple):
    """The policy's state: budgets and step sizes in force, and their factor ``eps / eps0``."""

    eps: Tensor
    alpha: Tensor
    factor: Tensor


@dataclasses.dataclass(frozen=True)
class EqualLosses:
    """Budgets ``eps0 * clamp((mean L / L_p) ** power, *clamp)`` from the players' losses."""

    aggregator: mr.Aggregator
    power: float = 1.0
    clamp: tuple[float, float] = (0.5, 2.0)
    measure = mr.Measure("before", gradients=False)  # each player's loss, before the attack

    def __post_init__(self) -> None:
        if not isinstance(self.power, int | float) or not 0 < self.power < math.inf:
            raise ValueError(f"power must be a finite number > 0, got {self.power!r}")
        if not (len(self.clamp) == 2 and 0 < self.clamp[0] <= 1 <= self.clamp[1] < math.inf):
            raise ValueError(f"clamp must be (lo, hi) with 0 < lo <= 1 <= hi, got {self.clamp!r}")

    def init(self, device: torch.device | None = None) -> EqualLossState:
        eps, alpha = mr.base_budgets(self.aggregator.players, device)
        return EqualLossState(eps, alpha, torch.ones_like(eps))

    def update(self, state: EqualLossState, measurements: mr.Measurements) -> EqualLossState:
        loss = measurements.loss.float()  # [K], the mean over ranks under DDP
        factor = (loss.mean() / loss).pow(self.power).clamp(*self.clamp).nan_to_num(nan=1.0)
        factor = torch.where(loss.isfinite().all(), factor, 1.0)  # base budgets; no host read
        eps0, alpha0 = mr.base_budgets(self.aggregator.players, loss.device)
        return EqualLossState(eps0 * factor, alpha0 * factor, factor)


def equal_losses(aggregator: mr.Aggregator, power: float = 1.0, clamp=(0.5, 2.0)) -> EqualLosses:
    """The policy around an aggregator: ``equal_losses(mr.max_(mr.linf, mr.l2), power=0.5)``."""
    return EqualLosses(aggregator, power, tuple(clamp))


# --8<-- [end:policy]


# --8<-- [start:demo]
PLAYERS = (  # the digits recipe's players (recipes/digits.py)
    mr.linf(eps=0.1, alpha=0.025, steps=5),
    mr.l2(eps=0.75, alpha=0.2, steps=5),
    mr.l1(eps=3.0, alpha=0.5, steps=5, k_min=2, k_max=8),
)


def demo(epochs: int = 1, n_test: int = 256, seed: int = 0) -> dict:
    """Train a digits CNN with MAX at budgets that equalise the losses; evaluate it with PGD."""
    from multirobust.data import digits
    from multirobust.models import DigitsCNN

    torch.manual_seed(seed)
    train, test = digits(seed=seed)
    model = DigitsCNN()
    clean = torch.optim.Adam(model.parameters(), lr=3e-3)
    for x, y in DataLoader(train, batch_size=64, shuffle=True):  # a clean epoch first: the
        clean.zero_grad()  # robust losses of an untrained model are all about log(10)
        F.cross_entropy(model(x), y).backward()
        clean.step()
    game = equal_losses(mr.max_(*PLAYERS), power=1.0)
    trainer = mr.Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-3), game, seed=seed)
    history = trainer.fit(train, epochs=epochs, batch_size=64)
    x, y = test.tensors[0][:n_test], test.tensors[1][:n_test]
    report = mr.evaluate(
        model, (x, y), PLAYERS, "pgd-strong", restarts=0, progress=False, checks=False
    )
    return {"history": history, "report": report}


if __name__ == "__main__":
    out = demo()
    for key in ("factor", "player_loss"):
        series = mr.diagnostics.trajectory(out["history"], key)
        print(key, "every 5 steps:", {p: [round(v, 2) for v in s[::5]] for p, s in series.items()})
    print(out["report"])
# --8<-- [end:demo]
