"""Measuring the players (multirobust.measure): when each measurement attacks, what it reuses,
what it returns; bad measures refused by name."""

import pytest
import torch
from torch import nn

import multirobust as mr
from bad_input import Row, refuse, table
from multirobust import measure
from multirobust.measure import Measure, check_measure, measure_players

PLAYERS = (mr.linf(eps=0.1, steps=3), mr.l2(eps=0.5, steps=5))


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 4, 4, generator=g), torch.randint(0, 3, (6,), generator=g)


def spy_attacks(monkeypatch) -> list[dict]:
    """Record every ``attack_each`` call ``measure_players`` makes."""
    calls: list[dict] = []
    real = measure.attack_each

    def spy(model, players, x, y, eps, alpha, generator, **kw):
        calls.append({"eps": eps.clone(), "alpha": alpha.clone(), **kw})
        return real(model, players, x, y, eps, alpha, generator, **kw)

    monkeypatch.setattr(measure, "attack_each", spy)
    return calls


def test_before_attacks_each_player_at_base_budgets_with_its_own_steps(monkeypatch) -> None:
    calls = spy_attacks(monkeypatch)
    x, y = batch()
    agg = mr.max_(*PLAYERS)
    got = measure_players(net(), agg, x, y, Measure("before"), generator=torch.Generator())
    (call,) = calls
    eps0, alpha0 = mr.base_budgets(PLAYERS, x.device)
    assert torch.equal(call["eps"], eps0) and torch.equal(call["alpha"], alpha0)
    assert call["steps"] is None  # the players' own steps (3 and 5)
    assert got.loss.shape == (2,) and got.norm is not None and got.norm.shape == (2,)
    assert bool((got.norm > 0).all())


def test_probe_steps_take_steps_that_reach_the_budget(monkeypatch) -> None:
    calls = spy_attacks(monkeypatch)
    x, y = batch()
    measure_players(net(), mr.max_(*PLAYERS), x, y, Measure("before", probe_steps=2))
    eps0, alpha0 = mr.base_budgets(PLAYERS, x.device)
    assert calls[0]["steps"] == 2
    torch.testing.assert_close(calls[0]["alpha"], torch.maximum(alpha0, eps0 / 2))


def test_after_reuses_max_per_player_batches(monkeypatch) -> None:
    calls = spy_attacks(monkeypatch)
    x, y = batch()
    model, agg = net(), mr.max_(*PLAYERS)
    out = agg.perturb(model, x, y, generator=torch.Generator().manual_seed(0))
    calls.clear()
    got = measure_players(model, agg, x, y, Measure("after"), batch=out)
    assert calls == []  # no new attack
    want = mr.player_gradients(model, out.per_player, y)
    torch.testing.assert_close(got.norm, want.norm)
    torch.testing.assert_close(got.loss, want.loss)


def test_after_without_per_player_batches_attacks(monkeypatch) -> None:
    calls = spy_attacks(monkeypatch)
    x, y = batch()
    model, agg = net(), mr.msd(*PLAYERS, steps=2)
    out = agg.perturb(model, x, y)
    calls.clear()
    measure_players(model, agg, x, y, Measure("after"), batch=out)
    assert len(calls) == 1  # MSD keeps no per-player batches: probe attacks instead


def test_without_gradients_the_norm_is_none(monkeypatch) -> None:
    x, y = batch()
    model, agg = net(), mr.max_(*PLAYERS)
    out = agg.perturb(model, x, y, generator=torch.Generator().manual_seed(0))
    got = measure_players(model, agg, x, y, Measure("after", gradients=False), batch=out)
    assert got.norm is None
    torch.testing.assert_close(got.loss, out.player_loss)


BAD_INPUT = [
    Row(
        "measure-a-string",
        "type",
        lambda: check_measure("before"),
        TypeError,
        "a budget policy's measure must be a multirobust.Measure or None, got str",
    ),
    Row(
        "measure-when-during",
        "value",
        lambda: check_measure(Measure("during")),
        ValueError,
        r"measure\.when must be one of 'before', 'after'",
    ),
    Row(
        "measure-norm-linf",
        "value",
        lambda: check_measure(Measure("after", norm="linf")),
        ValueError,
        r"measure\.norm must be one of",
    ),
    Row(
        "measure-probe_steps-0",
        "value",
        lambda: check_measure(Measure("after", probe_steps=0)),
        ValueError,
        r"measure\.probe_steps must be an int >= 1",
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)


def test_good_measures_pass() -> None:
    assert check_measure(None) is None
    assert check_measure(Measure("before", probe_steps=3)) == Measure("before", probe_steps=3)
    with pytest.raises(TypeError):
        check_measure(object())
