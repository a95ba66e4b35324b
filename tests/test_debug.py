"""Debug mode: a player whose projection leaks is caught at the first step, by name, in every
attack path (pgd, MAX/AVG through the trainer, MSD, evaluate); correct players pass; the mode is
off by default and costs nothing then."""

import dataclasses

import pytest
import torch
from torch import nn

import multirobust as mr
from multirobust import debug


@dataclasses.dataclass(frozen=True)
class Leaky(mr.Linf):
    """An l_inf player whose projection forgets the ball (a typical bug in a new player)."""

    name: str = "leaky"

    def project(self, x, delta, eps):
        return (x + delta).clamp(0, 1) - x


@dataclasses.dataclass(frozen=True)
class OffBox(mr.L2):
    """An l_2 player that forgets the box, in project and in apply."""

    name: str = "offbox"

    def project(self, x, delta, eps):
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        return delta * (eps / norm).clamp(max=1)

    def apply(self, x, delta):
        return x + delta


LEAKY = Leaky(eps=0.05, alpha=0.1, steps=3)
FINE = (mr.l2(eps=0.5, alpha=0.2, steps=3), mr.l1(eps=1.0, alpha=0.5, steps=3, k_min=2, k_max=4))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g)


def attacks():
    net, (x, y) = model(), batch()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return {
        "pgd": lambda players: mr.pgd(players[0], restarts=1)(net, x, y, seed=0),
        "max": lambda players: mr.Trainer(net, opt, mr.max_(*players)).step(x, y),
        "avg+ab": lambda players: mr.Trainer(net, opt, mr.adaptive(mr.avg(*players))).step(x, y),
        "msd": lambda players: mr.Trainer(net, opt, mr.msd(*players, steps=3)).step(x, y),
        "evaluate": lambda players: mr.evaluate(net, (x, y), players, restarts=1, checks=False),
    }


@pytest.mark.parametrize("path", list(attacks()))
def test_a_leaky_player_is_caught_by_name(path: str) -> None:
    attack = attacks()[path]
    attack((LEAKY, *FINE))  # off by default: the leak goes unnoticed
    with mr.check_feasibility(), pytest.raises(mr.InfeasiblePerturbation) as caught:
        attack((LEAKY, *FINE))
    assert "player 'leaky' returned a perturbation outside its own ball" in str(caught.value)
    assert "> eps 0.05" in str(caught.value)


@dataclasses.dataclass(frozen=True)
class LeakyStart(mr.Linf):
    """An l_inf player whose random start forgets the ball; its projection is right."""

    name: str = "leakystart"

    def init(self, x, eps, generator=None):
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (x + 2 * u - 1).clamp(0, 1) - x


@pytest.mark.parametrize("path", ["pgd", "evaluate"])
def test_a_leaky_random_start_is_caught_by_name(path: str) -> None:
    """evaluate runs each restart from its random start as a run of its own: checked too."""
    with mr.check_feasibility(), pytest.raises(mr.InfeasiblePerturbation) as caught:
        attacks()[path]((LeakyStart(eps=0.01, alpha=0.005, steps=2),))
    message = str(caught.value)
    assert "player 'leakystart'" in message and "the random start of restart 1" in message
    assert message.endswith("check its init()")


@pytest.mark.parametrize("path", list(attacks()))
def test_correct_players_pass(path: str) -> None:
    with mr.check_feasibility(rtol=0, atol=1e-6):
        attacks()[path]((mr.linf(eps=0.05, alpha=0.02, steps=3), *FINE))


def test_an_input_outside_the_box_is_caught() -> None:
    net, (x, y) = model(), batch()
    with mr.check_feasibility(), pytest.raises(mr.InfeasiblePerturbation, match="'offbox' made"):
        mr.pgd(OffBox(eps=2.0, alpha=1.0, steps=2))(net, x, y, seed=0)


def test_the_environment_variable_turns_it_on(monkeypatch) -> None:
    net, (x, y) = model(), batch()
    assert not debug.enabled()
    monkeypatch.setenv("MULTIROBUST_DEBUG", "1")
    assert debug.enabled()
    with pytest.raises(mr.InfeasiblePerturbation, match="'leaky'"):
        mr.pgd(LEAKY)(net, x, y, seed=0)


def test_bad_tolerances() -> None:
    with pytest.raises(ValueError, match="rtol and atol must be >= 0"), mr.check_feasibility(-1):
        pass


@dataclasses.dataclass(frozen=True)
class NanStep(mr.Linf):
    """An l_inf player whose step is NaN (say, a division by a zero gradient norm): without the
    check, every loss is NaN, no step beats the clean input, and training runs on clean inputs."""

    name: str = "nanstep"

    def ascend(self, x, delta, grad, alpha, noise=None):
        return torch.full_like(delta, float("nan"))


@pytest.mark.parametrize("path", list(attacks()))
def test_a_non_finite_step_is_caught_by_name(path: str) -> None:
    attack = attacks()[path]
    players = (NanStep(eps=0.05, alpha=0.02, steps=3), *FINE)
    with mr.check_feasibility(), pytest.raises(mr.InfeasiblePerturbation) as caught:
        attack(players)
    message = str(caught.value)
    assert "player 'nanstep' returned a non-finite perturbation (NaN or inf)" in message
    assert " step 1" in message and message.endswith("check its ascend() and project()")


@dataclasses.dataclass(frozen=True)
class InfStart(mr.Linf):
    """An l_inf player whose random start is infinite."""

    name: str = "infstart"

    def init(self, x, eps, generator=None):
        return torch.full_like(x, float("inf"))


def test_a_non_finite_random_start_is_caught_by_name() -> None:
    with mr.check_feasibility(), pytest.raises(mr.InfeasiblePerturbation) as caught:
        attacks()["pgd"]((InfStart(eps=0.05, alpha=0.02, steps=2),))
    message = str(caught.value)
    assert "player 'infstart' returned a non-finite perturbation" in message
    assert "the random start of restart 1" in message and message.endswith("check its init()")
