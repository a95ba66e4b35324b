"""Aggregators (multirobust.aggregators): MSD, MAX and AVG batches, their losses and shares, the
model left as found; random games make feasible batches; bad input refused by name."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fuzzing as fz
import multirobust as mr
from bad_input import Row, refuse, table

LINF = mr.linf(eps=0.1, alpha=0.03, steps=4)
L2 = mr.l2(eps=0.5, alpha=0.2, steps=4)
L1 = mr.l1(eps=2.0, alpha=0.5, steps=4, k_min=2, k_max=6)


def measured(norms: torch.Tensor) -> mr.Measurements:
    """Measurements with these gradient norms (and zero losses)."""
    return mr.Measurements(torch.zeros_like(norms), norms)


def small_cnn(batchnorm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(1, 4, 3, padding=1)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(4))
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 5)]
    return nn.Sequential(*layers)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(12, 1, 6, 6, generator=g), torch.randint(0, 5, (12,), generator=g)


@pytest.mark.parametrize("player", [LINF, L2, L1], ids=lambda p: p.name)
def test_msd_with_one_player_equals_pgd(player, batch):
    x, y = batch
    model = small_cnn().eval()
    got = mr.msd(player, steps=player.steps).perturb(
        model, x, y, generator=torch.Generator().manual_seed(3)
    )
    want = mr.pgd(player, restarts=0)(model, x, y, seed=3)
    torch.testing.assert_close(got.x, want, rtol=0, atol=0)
    assert got.gamma.tolist() == [pytest.approx(1.0, abs=1 / len(y))] or got.gamma.item() <= 1


def test_msd_gamma_counts_winning_steps(batch):
    x, y = batch
    out = mr.msd(LINF, L2, L1, steps=5).perturb(small_cnn(), x, y)
    assert out.gamma.shape == (3,)
    assert 0 <= float(out.gamma.sum()) <= 1 + 1e-6
    assert out.x.shape == x.shape and out.per_player is None


def test_msd_scores_candidates_in_one_forward(batch):
    x, y = batch
    model = small_cnn()
    sizes = []
    model.register_forward_hook(lambda m, i, o: sizes.append(i[0].shape[0]))
    mr.msd(LINF, L2, L1, steps=3).perturb(model, x, y)
    assert sizes.count(3 * len(y)) == 3  # one batched forward of the K candidates per iteration


def test_max_keeps_the_highest_loss_perturbation_per_example(batch):
    x, y = batch
    model = small_cnn().eval()
    out = mr.max_(LINF, L2, L1).perturb(model, x, y, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        losses = torch.stack(
            [F.cross_entropy(model(xp), y, reduction="none") for xp in out.per_player]
        )
        chosen = F.cross_entropy(model(out.x), y, reduction="none")
    torch.testing.assert_close(chosen, losses.max(dim=0).values)
    wins = torch.bincount(losses.argmax(dim=0), minlength=3).float() / len(y)
    torch.testing.assert_close(out.gamma, wins)


def test_avg_loss_is_the_loss_of_the_concatenated_batches(batch):
    x, y = batch
    model = small_cnn().eval()
    agg = mr.avg(LINF, L2, L1)
    out = agg.perturb(model, x, y)
    concatenated = F.cross_entropy(model(torch.cat(list(out.per_player))), y.repeat(3))
    mean_of_means = torch.stack([F.cross_entropy(model(xp), y) for xp in out.per_player]).mean()
    torch.testing.assert_close(agg.loss(model, out), concatenated)
    torch.testing.assert_close(agg.loss(model, out), mean_of_means)
    assert out.gamma.tolist() == pytest.approx([1 / 3] * 3)


def test_attacks_leave_the_model_as_found(batch):
    x, y = batch
    model = small_cnn(batchnorm=True).train()
    before = copy.deepcopy(model.state_dict())
    for agg in (mr.max_(LINF, L2), mr.avg(LINF, L2), mr.msd(LINF, L2, steps=3)):
        agg.perturb(model, x, y)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("order", ["linf-first", "bright-first"])
def test_msd_refuses_players_that_cannot_share_a_state(order: str) -> None:
    players = (LINF, Brightness()) if order == "linf-first" else (Brightness(), LINF)
    net = model16()
    before = copy.deepcopy(net.state_dict())
    trainer = mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.msd(*players))
    with pytest.raises(ValueError, match=r"^msd needs players that share one state.*max_ or avg"):
        trainer.step(*batch4())  # it used to fail inside torch, on a shape mismatch
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.avg(*players)).step(*batch4())


# ---------------------------------------------------------------------------------------------
# Random games (hypothesis)
# ---------------------------------------------------------------------------------------------


@st.composite
def aggregator_cases(draw: st.DrawFn) -> dict:
    shape = draw(fz.image_shapes())
    game = draw(fz.games(math.prod(shape[1:])))
    k = len(game["kinds"])
    # Budgets [K] as a policy passes them (float32), from a tenth to twice the players' own.
    factors = draw(st.one_of(st.none(), st.lists(st.floats(0.1, 2.0), min_size=k, max_size=k)))
    return {
        "shape": shape,
        "dtype": draw(st.sampled_from(fz.DTYPES)),
        "game": game,
        "factors": factors,
        "classes": draw(st.integers(2, 4)),
        "hidden": draw(st.sampled_from([0, 8])),
        "seed": draw(fz.SEEDS),
    }


@settings(max_examples=fz.examples(40), deadline=None)
@given(aggregator_cases())
def test_aggregators_make_feasible_batches(case: dict) -> None:
    shape, dtype, classes, seed = case["shape"], case["dtype"], case["classes"], case["seed"]
    aggregator = fz.build_aggregator(case["game"])
    k = len(aggregator.players)
    model = fz.tiny_model(math.prod(shape[1:]), classes, dtype, seed, case["hidden"])
    x, y = fz.random_x(shape, dtype, seed, 0.3), fz.labels(shape[0], classes, seed)
    eps0, alpha0 = aggregator.base_budgets()
    if case["factors"] is None:
        eps = alpha = None
        eps_used = eps0
    else:
        f = torch.tensor(case["factors"])
        eps, alpha = eps0 * f, alpha0 * f
        eps_used = eps

    batch = aggregator.perturb(model, x, y, eps, alpha, fz.generator(seed))
    ok = fz.assert_adversarial_batch(aggregator, x, y, batch.x, batch.y, eps_used)
    gamma = batch.gamma
    assert gamma.shape == (k,) and bool(((gamma >= 0) & (gamma <= 1)).all())
    if isinstance(aggregator, mr.Msd):
        assert batch.per_player is None and batch.player_loss is None
        assert float(gamma.sum()) <= 1 + 1e-6
        # The returned delta of an example came from player p's step for a share gamma_p of them.
        assert bool((ok.sum(1) >= torch.round(gamma * shape[0]) - 1e-6).all()), (ok, gamma)
    else:
        assert float(gamma.sum()) == pytest.approx(1.0, abs=1e-6)
        assert batch.per_player is not None and batch.per_player.shape == (k, *shape)
        for i, p in enumerate(aggregator.players):
            assert bool(fz.feasible_inputs(p, x, batch.per_player[i], eps_used[i]).all())
        assert batch.player_loss is not None and batch.player_loss.shape == (k,)
        assert bool(torch.isfinite(batch.player_loss).all())
        if isinstance(aggregator, mr.Max):  # each example is one of the players' own
            same = (batch.per_player == batch.x).flatten(2).all(2)
            assert bool(same.any(0).all())
    assert bool(torch.isfinite(aggregator.loss(model, batch)))
    again = aggregator.perturb(model, x, y, eps, alpha, fz.generator(seed))
    assert torch.equal(again.x, batch.x) and torch.equal(again.gamma, gamma)


# ---------------------------------------------------------------------------------------------
# Budget policies through Trainer.step
# ---------------------------------------------------------------------------------------------


@settings(max_examples=fz.examples(5), deadline=None)
@given(value=st.one_of(st.integers(-10, 0), st.sampled_from([1.5, "2", None, math.nan, True])))
def test_bad_msd_steps_are_rejected_naming_the_argument(value: object) -> None:
    fz.check_bad_setting("msd.steps", value, None, None)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


def model16() -> nn.Module:
    """A 3-class linear model of inputs [b, 1, 4, 4]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def batch4(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 1, 4, 4, generator=g), torch.arange(b) % 3


class Brightness:
    """A non-additive player: its state is one brightness shift per example, not of x's shape."""

    name, eps, alpha, steps, restarts = "bright", 0.1, 0.05, 1, 0

    def check_input(self, x):
        pass

    def zero(self, x):
        return x.new_zeros(x.shape[0])

    def init(self, x, eps, generator):
        return self.zero(x)

    def draw(self, x, generator):
        return None

    def ascend(self, x, delta, grad, alpha, noise):
        return delta + alpha * grad.sign()  # grad is taken with respect to the state

    def project(self, x, delta, eps):
        return delta.clamp(-eps, eps)

    def size(self, delta):
        return delta.abs()

    def apply(self, x, delta):
        return (x + delta.view(-1, *[1] * (x.dim() - 1))).clamp(0, 1)


L2_SMALL = mr.l2(eps=0.5, alpha=0.25, steps=1)
LINF_SMALL = mr.linf(eps=0.1, alpha=0.05, steps=1)

BAD_INPUT = [
    Row("no-players", "value", lambda: mr.msd(), ValueError, "at least one player"),
    Row(
        "two-players-of-one-name",
        "value",
        lambda: mr.max_(mr.linf, mr.linf(eps=0.1)),
        ValueError,
        r"distinct names.*linf",
    ),
    # Under the test run's type checker the annotation answers first; both name Player.
    Row("a-name-for-a-player", "type", lambda: mr.avg(mr.linf, "l2"), TypeError, "Player"),
    Row(
        "a-name-for-a-player-untyped",
        "member",
        lambda: mr.avg(mr.linf, "l2"),
        TypeError,
        r"every player must implement the Player protocol; str lacks name, eps",
        untyped=True,
    ),
    Row("msd-steps-0", "value", lambda: mr.msd(mr.linf, steps=0), ValueError, "steps"),
    *(
        Row(
            f"perturb-eps-of-{k}-for-2-players",
            "value",
            lambda k=k: mr.max_(LINF_SMALL, L2_SMALL).perturb(
                model16(), *batch4(), eps=torch.full((k,), 0.1)
            ),
            ValueError,
            r"eps must be a tensor \[K\] with one entry per player",
        )
        for k in (1, 3)
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
