"""The compiled attack iterations equal the eager ones (CPU; slow: compiling takes a minute)."""

import copy

import pytest
import torch
from torch import nn

import multirobust as mr

PLAYERS = (
    mr.linf(eps=0.1, alpha=0.05, steps=3),
    mr.l2(eps=0.5, alpha=0.25, steps=3),
    mr.l1(eps=2.0, alpha=0.5, steps=3, k_min=2, k_max=6),
)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 5),
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "game", [mr.adaptive(mr.msd(*PLAYERS, steps=3)), mr.max_(*PLAYERS)], ids=["msd+ab", "max"]
)
def test_compiled_step_equals_eager_step(game):
    """Tolerance: atol 1e-5 on the weights after two steps (kernel fusion reorders float sums)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)
    weights, records = [], []
    for compiled in (False, True):
        net = model()
        t = mr.Trainer(
            net, torch.optim.SGD(net.parameters(), lr=0.1), game, seed=1, compile=compiled
        )
        records.append([t.step(x, y) for _ in range(2)])
        weights.append(copy.deepcopy(net.state_dict()))
    for k, v in weights[0].items():
        torch.testing.assert_close(weights[1][k], v, atol=1e-5, rtol=1e-4)
    assert records[0][-1]["gamma"] == pytest.approx(records[1][-1]["gamma"])
    assert records[0][-1]["eps"] == pytest.approx(records[1][-1]["eps"], rel=1e-4)
