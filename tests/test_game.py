"""Aggregators, per-player gradients and budget policies (spec §3-§5)."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import multirobust as mr
from multirobust import gradients
from multirobust.attacks import frozen_model
from multirobust.budgets import BudgetState

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


@pytest.mark.parametrize("norm", ["l2", "l1"])
def test_vmap_player_gradients_equal_separate_backward_passes(norm):
    """On a BatchNorm model in train mode; tolerance rtol 1e-5 (float32 summation order)."""
    model = small_cnn(batchnorm=True).train()
    g = torch.Generator().manual_seed(0)
    inputs, y = torch.rand(3, 10, 1, 6, 6, generator=g), torch.randint(0, 5, (10,), generator=g)
    before = copy.deepcopy(model.state_dict())
    got = mr.player_gradients(model, inputs, y, norm=norm, method="vmap")
    want_norm, want_loss = [], []
    for xp in inputs:
        m = copy.deepcopy(model)
        loss = F.cross_entropy(m(xp), y)
        grads = torch.autograd.grad(loss, list(m.parameters()))
        flat = torch.cat([gr.flatten() for gr in grads])
        want_norm.append(flat.abs().sum() if norm == "l1" else flat.norm())
        want_loss.append(loss.detach())
    torch.testing.assert_close(got.norm, torch.stack(want_norm), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got.loss, torch.stack(want_loss), rtol=1e-5, atol=1e-7)
    for method in ("loop", "auto"):
        other = mr.player_gradients(model, inputs, y, norm, method)
        torch.testing.assert_close(other.norm, got.norm, rtol=1e-5, atol=1e-7)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # running statistics untouched


def test_player_gradients_loop_over_players_on_cpu(monkeypatch):
    """``method="auto"`` on CPU takes the loop: it measured faster there than vmap."""

    def refuse(*args, **kwargs):
        raise AssertionError("vmap path taken on CPU")

    monkeypatch.setattr(gradients, "_all_players", refuse)
    model = small_cnn(batchnorm=True).train()
    inputs, y = torch.rand(3, 4, 1, 6, 6), torch.randint(0, 5, (4,))
    assert mr.player_gradients(model, inputs, y).norm.shape == (3,)


def test_player_gradients_under_bf16_autocast_on_a_batchnorm_model():
    """vmap's BatchNorm rule fails on bf16 activations; under autocast the players loop instead.
    The bf16 norms stay within 5% of fp32's."""
    model = small_cnn(batchnorm=True).train()
    g = torch.Generator().manual_seed(0)
    inputs, y = torch.rand(3, 10, 1, 6, 6, generator=g), torch.randint(0, 5, (10,), generator=g)
    want = mr.player_gradients(model, inputs, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = mr.player_gradients(model, inputs, y)
        with pytest.raises(RuntimeError, match="BFloat16"):  # if torch fixes this, use vmap
            mr.player_gradients(model, inputs, y, method="vmap")
    torch.testing.assert_close(got.norm, want.norm, rtol=0.05, atol=0)


# -- budget policies ---------------------------------------------------------------------------

norms3 = st.lists(st.floats(1e-3, 1e3, allow_nan=False), min_size=3, max_size=3, unique=True).map(
    torch.tensor
)


@given(norms3)
def test_adaptive_rule_properties(norms):
    game = mr.adaptive(mr.msd(LINF, L2, L1))
    state = game.update(game.init(), measured(norms))
    eps0, _ = game.aggregator.base_budgets()
    ratio = state.eps / eps0
    order = norms.argsort()
    assert ratio[order[1]] == pytest.approx(1.0)  # the middle player never changes
    assert ratio[order[2]] >= 1.0 - 1e-6  # the largest never falls below base
    assert ratio[order[0]] <= 1.0 + 1e-6
    assert bool(((ratio >= 0.5 - 1e-6) & (ratio <= 2.0 + 1e-6)).all())
    torch.testing.assert_close(state.alpha / game.aggregator.base_budgets()[1], ratio)


@given(st.floats(1e-3, 1e3), st.integers(2, 6))
def test_equal_norms_leave_budgets_at_base(value, k):
    players = [mr.linf(name=f"p{i}") for i in range(k)]
    game = mr.adaptive(mr.max_(*players), clamp=None)
    state = game.update(game.init(), measured(torch.full((k,), value)))
    torch.testing.assert_close(state.eps, game.aggregator.base_budgets()[0])


@given(norms3)
def test_budgets_are_relative_to_base_never_compounding(norms):
    game = mr.adaptive(mr.avg(LINF, L2, L1), clamp=(0.25, 4.0))
    once = game.update(game.init(), measured(norms))
    twice = game.update(once, measured(norms))
    torch.testing.assert_close(once.eps, twice.eps)


def test_fixed_step_sizes_option():
    game = mr.adaptive(mr.avg(LINF, L2, L1), scale_steps=False)
    state = game.update(game.init(), measured(torch.tensor([1.0, 2.0, 3.0])))
    torch.testing.assert_close(state.alpha, game.aggregator.base_budgets()[1])


@pytest.mark.parametrize("norms", [[0.0, 0.0, 1.0], [1.0, float("nan"), 2.0], [1, float("inf"), 2]])
def test_degenerate_norms_keep_base_budgets_and_are_counted(norms):
    game = mr.adaptive(mr.msd(LINF, L2, L1))
    state = game.update(game.init(), measured(torch.tensor(norms, dtype=torch.float32)))
    torch.testing.assert_close(state.eps, game.aggregator.base_budgets()[0])
    assert state.fallbacks == 1


def test_fixed_policy_never_changes():
    game = mr.fixed(mr.max_(LINF, L2))
    state = game.init()
    assert game.update(state, measured(torch.tensor([1.0, 100.0]))) is state
    assert isinstance(state, BudgetState)


def test_design_card_expression_works_verbatim():
    game = mr.adaptive(mr.msd(mr.linf, mr.l2, mr.l1), norm="l2")
    assert game.aggregator.names == ("linf", "l2", "l1")
    assert game == mr.adaptive(mr.msd(mr.linf, mr.l2, mr.l1), norm="l2")
    assert "Adaptive" in repr(game) and "Msd" in repr(game)


def test_games_are_frozen_and_picklable():
    import pickle

    game = mr.adaptive(mr.max_(mr.linf, mr.l2(eps=1.0)), norm="l1", timing="lagged")
    assert pickle.loads(pickle.dumps(game)) == game
    with pytest.raises(AttributeError):
        game.norm = "l2"  # type: ignore[misc]


# -- diagnostics -------------------------------------------------------------------------------


def test_streaks_on_the_paper_example():
    s = mr.diagnostics.streaks(["l1", "l1", "l2", "linf", "linf"])
    assert s.longest == {"l1": 2, "l2": 1, "linf": 2}
    assert s.mean == pytest.approx(5 / 3)
    assert s.count == 3
    assert s.dominated == {"l1": 2, "l2": 1, "linf": 2}


def test_streaks_skip_steps_without_gradients():
    s = mr.diagnostics.streaks(["a", None, "a", "a"])
    assert s.longest == {"a": 2} and s.count == 2
    assert mr.diagnostics.streaks([]).mean == 0.0


# -- bad input ---------------------------------------------------------------------------------


def test_aggregator_without_players():
    with pytest.raises(ValueError, match="at least one player"):
        mr.msd()


def test_aggregator_with_two_players_of_one_name():
    with pytest.raises(ValueError, match=r"distinct names.*linf"):
        mr.max_(mr.linf, mr.linf(eps=0.1))


def test_aggregator_with_a_non_player():
    # Under the test run's beartype checks the annotation catches it first; both name Player.
    with pytest.raises(TypeError, match="Player"):
        mr.avg(mr.linf, "l2")  # type: ignore[arg-type]


def test_msd_steps_must_be_positive():
    with pytest.raises(ValueError, match="steps"):
        mr.msd(mr.linf, steps=0)


def test_unknown_norm():
    with pytest.raises(ValueError, match="norm must be one of 'l1', 'l2'"):
        mr.adaptive(mr.msd(mr.linf), norm="linf")


def test_unknown_timing():
    with pytest.raises(ValueError, match="timing must be one of"):
        mr.adaptive(mr.msd(mr.linf), timing="later")


@pytest.mark.parametrize(
    "clamp", [(0.0, 2.0), (1.5, 2.0), (0.5, 0.9), (2.0, 0.5), (0.5, float("inf"))]
)
def test_bad_clamp(clamp):
    with pytest.raises(ValueError, match="clamp must satisfy 0 < lo <= 1 <= hi"):
        mr.adaptive(mr.msd(mr.linf), clamp=clamp)


def test_policy_around_a_non_aggregator():
    with pytest.raises(TypeError, match="aggregator"):
        mr.adaptive(mr.linf)  # type: ignore[arg-type]


def test_median_of_an_even_number_of_players():
    factor, ok = mr.adaptive_factors(torch.tensor([1.0, 3.0]), clamp=None)
    assert ok and factor.tolist() == pytest.approx([0.5, 1.5])


def test_model_mode_restored_by_frozen_model_on_error():
    model = small_cnn(batchnorm=True).train()
    with pytest.raises(RuntimeError), frozen_model(model):
        raise RuntimeError("boom")
    assert all(m.training for m in model.modules())
