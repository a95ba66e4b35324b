"""Objectives (multirobust.objectives): cross-entropy's attack loss, TRADES' attack and training
losses against their formulas, TRADES through MSD and MAX training steps; bad input refused by
name."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import multirobust as mr
from bad_input import Row, refuse, table
from multirobust.aggregators import Perturbed


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def batch(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 1, 4, 4, generator=g), torch.randint(0, 3, (b,), generator=g)


def test_cross_entropy_attack_loss_is_per_example_cross_entropy() -> None:
    x, y = batch()
    logits = net()(x)
    ce = mr.cross_entropy
    got = ce.attack_loss(logits, ce.reference(net(), x, y))
    assert got.shape == (6,)
    torch.testing.assert_close(got, F.cross_entropy(logits, y, reduction="none"))


def test_trades_attack_loss_is_zero_at_the_reference() -> None:
    x, y = batch()
    model, t = net(), mr.trades(beta=6.0)
    with torch.no_grad():
        reference = t.reference(model, x, y)
        loss = t.attack_loss(model(x), reference)
        moved = t.attack_loss(model(x) + torch.tensor([3.0, 0.0, 0.0]), reference)
    torch.testing.assert_close(loss, torch.zeros(6), atol=1e-6, rtol=0)
    assert bool((moved > 1e-3).all())  # and positive elsewhere: the test can fail


def test_trades_with_beta_0_trains_on_clean_cross_entropy() -> None:
    x, y = batch()
    model = net()
    adv = (x + 0.1).clamp(0, 1)
    out = Perturbed(adv, y, torch.ones(1), None, None, clean=x)
    got = mr.trades(beta=0.0).training_loss(model, out)
    torch.testing.assert_close(got, F.cross_entropy(model(x), y))


def test_trades_training_loss_and_its_gradient_follow_the_formula() -> None:
    """CE(f(x), y) + beta * mean KL(softmax f(x) || softmax f(x_adv)), on an AVG-like batch of
    2 * b adversarial examples paired with the clean batch repeated."""
    x, y = batch()
    adv = torch.cat([(x + 0.1).clamp(0, 1), (x - 0.1).clamp(0, 1)])
    out = Perturbed(adv, y.repeat(2), torch.full((2,), 0.5), None, None, clean=x)
    beta = 6.0
    model = net()
    got = mr.trades(beta=beta).training_loss(model, out)
    got_grads = torch.autograd.grad(got, list(model.parameters()))

    clean = model(x)
    p = F.softmax(clean, dim=1).repeat(2, 1)
    log_q = F.log_softmax(model(adv), dim=1)
    kl = (p * (torch.log(p) - log_q)).sum(dim=1).mean()
    want = F.cross_entropy(clean, y) + beta * kl
    want_grads = torch.autograd.grad(want, list(model.parameters()))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("aggregator", ["msd", "max"])
def test_a_trades_training_step_runs_and_is_finite(aggregator: str) -> None:
    players = (mr.linf(eps=0.1, steps=2), mr.l2(eps=0.5, steps=2))
    t = mr.trades(beta=6.0)
    game = (
        mr.msd(*players, steps=2, objective=t)
        if aggregator == "msd"
        else mr.max_(*players, objective=t)
    )
    model = net()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), game, seed=0)
    record = trainer.step(*batch())
    assert torch.isfinite(torch.tensor(record["loss"])) and not record["skipped"]
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


BAD_INPUT = [
    Row(
        "trades-beta-a-string",
        "type",
        lambda: mr.trades(beta="6"),
        TypeError,
        "trades beta must be a number >= 0, got '6'",
        untyped=True,
    ),
    *(
        Row(
            f"trades-beta-{beta}",
            "value",
            lambda b=beta: mr.trades(beta=b),
            ValueError,
            "trades beta must be a finite number >= 0",
        )
        for beta in (-1.0, float("inf"), float("nan"))
    ),
    Row(
        "trades-jitter-negative",
        "value",
        lambda: mr.trades(jitter=-0.1),
        ValueError,
        "trades jitter must be a finite number > 0",
    ),
    Row(
        "trades-without-the-clean-batch",
        "data",
        lambda: mr.trades().training_loss(net(), Perturbed(*batch(), torch.ones(1), None, None)),
        ValueError,
        "trades needs the clean batch",
    ),
    Row(
        "objective-a-function",
        "member",
        lambda: mr.max_(mr.linf, objective=F.cross_entropy),
        TypeError,
        r"objective must implement mr.Objective \(jitter, reference, attack_loss",
        untyped=True,
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
