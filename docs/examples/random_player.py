"""A new aggregator for multirobust: one player, drawn at random, attacks each batch.

This is the SAT baseline of Croce & Hein (ICML 2022, "Adversarial robustness against multiple and
single l_p-threat models via quick fine-tuning of robust classifiers", the paper of E-AT): each
batch is attacked by a single player drawn uniformly at random, so a step costs one attack instead
of the K attacks of MAX or AVG. It is the worked example of the guide "Defining a new aggregator"
(``docs/guide/new-aggregator.md``); ``tests/test_examples.py`` trains with it, resumes it and runs
it under torchrun.

The draw comes from the generator the Trainer passes (its state is checkpointed), so a resumed run
draws the same players as an uninterrupted one.

Run it: ``python docs/examples/random_player.py`` trains a small CNN on scikit-learn's digits
against an l_inf, an l_2 and an l_1 player, prints how often each was drawn and the domination
streaks, then the clean, per-player and All robust accuracies.
"""

import dataclasses

import torch
from torch import Tensor, nn

import multirobust as mr
from multirobust.players import check_players


# --8<-- [start:aggregator]
@dataclasses.dataclass(frozen=True)
class RandomPlayer:
    """SAT: per batch, one player drawn uniformly from ``generator`` attacks the whole batch."""

    players: tuple[mr.Player, ...]
    objective: mr.Objective = mr.cross_entropy

    def __post_init__(self) -> None:
        object.__setattr__(self, "players", check_players(tuple(self.players)))

    def perturb(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        eps: Tensor | None = None,
        alpha: Tensor | None = None,
        generator: torch.Generator | None = None,
        compiled: bool | str = False,
    ) -> mr.Perturbed:
        base_eps, base_alpha = mr.base_budgets(self.players, x.device)
        eps, alpha = base_eps if eps is None else eps, base_alpha if alpha is None else alpha
        device = x.device if generator is None else generator.device
        # The one host read of a step: Python must know which player's attack to run.
        i = int(torch.randint(len(self.players), (), generator=generator, device=device))
        one, e, a = self.players[i : i + 1], eps[i : i + 1], alpha[i : i + 1]  # player i alone
        with mr.frozen_model(model), torch.no_grad():
            inputs, _ = mr.attack_each(
                model, one, x, y, e, a, generator, compiled=compiled, objective=self.objective
            )
        gamma = torch.eye(len(self.players), device=x.device)[i]  # all weight on player i
        return mr.Perturbed(inputs[0], y, gamma, per_player=None, player_loss=None, clean=x)

    def loss(self, model: nn.Module, batch: mr.Perturbed, compiled: bool | str = False) -> Tensor:
        return self.objective.training_loss(model, batch)  # eager: `compiled` serves the attacks


def random_player(*players: mr.Player, objective: mr.Objective = mr.cross_entropy) -> RandomPlayer:
    """The SAT aggregator over any number of players: ``random_player(mr.linf, mr.l2, mr.l1)``."""
    return RandomPlayer(players, objective)


# --8<-- [end:aggregator]


# --8<-- [start:demo]
PLAYERS = (  # the digits recipe's players (recipes/digits.py)
    mr.linf(eps=0.1, alpha=0.025, steps=10),
    mr.l2(eps=0.75, alpha=0.2, steps=10),
    mr.l1(eps=3.0, alpha=0.5, steps=10, k_min=2, k_max=8),
)


def demo(epochs: int = 1, n_test: int = 256, steps: int = 10, seed: int = 0) -> dict:
    """Train a digits CNN with SAT over ``PLAYERS``, logging domination; evaluate it with PGD."""
    from multirobust.data import digits
    from multirobust.models import DigitsCNN

    torch.manual_seed(seed)
    train, test = digits(seed=seed)
    players = tuple(p(steps=steps) for p in PLAYERS)
    model = DigitsCNN()
    game = mr.fixed(random_player(*players), track_domination=True, probe_steps=2)
    trainer = mr.Trainer(model, torch.optim.Adam(model.parameters(), lr=1e-3), game, seed=seed)
    history = trainer.fit(train, epochs=epochs, batch_size=64)
    drawn = {name: int(sum(g)) for name, g in mr.diagnostics.trajectory(history, "gamma").items()}
    x, y = test.tensors[0][:n_test], test.tensors[1][:n_test]
    report = mr.evaluate(
        model, (x, y), players, "pgd-strong", restarts=0, progress=False, checks=False
    )
    return {"history": history, "drawn": drawn, "report": report}


if __name__ == "__main__":
    out = demo()
    print(f"batches attacked by each player over {len(out['history'])} steps:", out["drawn"])
    print(mr.diagnostics.domination(out["history"]))
    print(out["report"])
# --8<-- [end:demo]
