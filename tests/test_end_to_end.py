"""End to end on real data (scikit-learn's digits, CPU): every game trains, AdaptiveBudget moves the
budgets within the clamp, and adversarial training beats training without attacks in union PGD
accuracy."""

import pytest
import torch
from torch.utils.data import DataLoader, Subset

import multirobust as mr
from multirobust.data import digits
from multirobust.models import DigitsCNN
from multirobust.paper.experiment import make_game

PLAYERS = (
    mr.linf(eps=0.1, alpha=0.04, steps=3),
    mr.l2(eps=0.75, alpha=0.3, steps=3),
    mr.l1(eps=3.0, alpha=0.8, steps=3, k_min=2, k_max=8),
)
EVAL = tuple(p(steps=10) for p in PLAYERS)


@pytest.fixture(scope="module")
def data():
    train, test = digits(seed=0)
    x, y = test.tensors
    return Subset(train, range(640)), (x[:200], y[:200])


def train(game, data, epochs: int = 4) -> tuple[torch.nn.Module, mr.History]:
    torch.manual_seed(0)
    model = DigitsCNN(width=16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = DataLoader(data[0], batch_size=64, shuffle=True)
    if game is None:  # no attacks: plain training
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        return model, mr.History()
    return model, mr.Trainer(model, opt, game, seed=0).fit(loader, epochs)


def union(model, data) -> float:
    return mr.evaluate(model, data[1], EVAL, restarts=0, seed=0, progress=False).union


@pytest.fixture(scope="module")
def undefended(data) -> float:
    return union(train(None, data)[0], data)


@pytest.mark.parametrize("method", ["max", "avg", "msd"])
@pytest.mark.parametrize("ab", ["none", "l2"])
def test_adversarial_training_beats_no_attacks(method, ab, data, undefended):
    game = make_game(PLAYERS, method, ab, msd_steps=3)
    model, history = train(game, data)
    assert history.skipped == 0
    if ab != "none":
        eps = mr.diagnostics.trajectory(history, "eps")
        for p in PLAYERS:
            ratios = torch.tensor(eps[p.name]) / p.eps
            assert bool(((ratios >= 0.5 - 1e-6) & (ratios <= 2 + 1e-6)).all())
        assert any(abs(r - 1) > 0.05 for p in PLAYERS for r in torch.tensor(eps[p.name]) / p.eps)
    robust = union(model, data)
    assert robust > undefended + 0.05, (robust, undefended)
