"""Budget policies (multirobust.budgets): the adaptive rule's properties, fixed budgets, degenerate
norms, frozen games; bad input refused by name."""

import math
import pickle

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import fuzzing as fz
import multirobust as mr
from bad_input import TYPECHECKED, Row, refuse, table
from multirobust.budgets import BudgetState
from test_aggregators import L1, L2, LINF, measured

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
    game = mr.adaptive(mr.max_(mr.linf, mr.l2(eps=1.0)), norm="l1", timing="lagged")
    assert pickle.loads(pickle.dumps(game)) == game
    with pytest.raises(AttributeError):
        game.norm = "l2"  # type: ignore[misc]


# -- diagnostics -------------------------------------------------------------------------------


def test_median_of_an_even_number_of_players():
    factor, ok = mr.adaptive_factors(torch.tensor([1.0, 3.0]), clamp=None)
    assert ok and factor.tolist() == pytest.approx([0.5, 1.5])


@settings(max_examples=fz.examples(20), deadline=None)
@given(
    norms=st.lists(
        st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 1e3, 1e10]), min_size=3, max_size=3
    ).filter(lambda v: sorted(v)[1] > 0),  # a zero median is the documented fallback
    seed=fz.SEEDS,
)
@example(norms=[1.0, 0.0, 2.0], seed=0)  # l2's budget becomes 0
@example(norms=[1e-30, 1e-30, 1e10], seed=0)  # l1's becomes inf (float32)
def test_unclamped_adaptive_budgets_stay_finite_and_positive(norms: list[float], seed: int) -> None:
    players = (
        mr.linf(eps=0.1, alpha=0.05, steps=1),
        mr.l2(eps=0.5, alpha=0.2, steps=1),
        mr.l1(eps=2.0, alpha=0.5, steps=1, k_min=2, k_max=2),
    )
    game = mr.adaptive(mr.max_(*players), clamp=None)
    state = game.update(game.init(), fz.measured(torch.tensor(norms)))
    # Each player's step from delta = 0 with a zero input gradient (a saturated or dead model),
    # projected at the new budget, as in the attacks at those budgets.
    x = fz.random_x((3, 1, 2, 2), torch.float32, seed, 0.3)
    zero = torch.zeros_like(x)
    for i, p in enumerate(players):
        stepped = p.ascend(x, zero, zero, state.alpha[i], p.draw(x, fz.generator(seed)))
        delta = p.project(x, stepped, state.eps[i])
        assert bool(torch.isfinite(delta).all()), (p.name, state.eps)
    assert bool(torch.isfinite(state.eps).all() and (state.eps > 0).all()), state.eps


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


@settings(max_examples=fz.examples(18), deadline=None)
@given(
    target=st.sampled_from([s for s in fz.SETTINGS if s.split(".")[0] in ("adaptive", "fixed")]),
    value=st.one_of(st.integers(-10, 0), st.sampled_from([1.5, "2", None, math.nan, True])),
    word=st.sampled_from(["fgsm", "", "L2", None, 2]),
    clamp=fz.BAD_CLAMPS,
)
def test_bad_policy_settings_are_rejected_naming_the_argument(
    target: str, value: object, word: object, clamp: object
) -> None:
    fz.check_bad_setting(target, value, word, clamp)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

TWO = torch.tensor([1.0, 2.0])
LINF_SMALL = mr.linf(eps=0.1, alpha=0.05, steps=1)

BAD_INPUT = [
    Row(
        "unknown-norm",
        "value",
        lambda: mr.adaptive(mr.msd(mr.linf), norm="linf"),
        ValueError,
        "norm must be one of 'l1', 'l2'",
    ),
    Row(
        "unknown-timing",
        "value",
        lambda: mr.adaptive(mr.msd(mr.linf), timing="later"),
        ValueError,
        "timing must be one of",
    ),
    *(
        Row(
            f"clamp-{lo}-{hi}",
            "value",
            lambda c=(lo, hi): mr.adaptive(mr.msd(mr.linf), clamp=c),
            ValueError,
            "clamp must satisfy 0 < lo <= 1 <= hi",
        )
        for lo, hi in [(0.0, 2.0), (1.5, 2.0), (0.5, 0.9), (2.0, 0.5), (0.5, float("inf"))]
    ),
    Row(
        "policy-around-a-player",
        "type",
        lambda: mr.adaptive(mr.linf),
        TypeError,
        "aggregator",
    ),
    *(
        Row(
            f"adaptive-factors-clamp-{lo}-{hi}",
            "value",
            lambda c=(lo, hi): mr.adaptive_factors(TWO, clamp=c),
            ValueError,
            "clamp must satisfy 0 < lo <= 1 <= hi < inf",
        )
        for lo, hi in [(2.0, 0.5), (0.0, 2.0), (0.5, math.inf), (math.nan, 2.0)]
    ),
    Row(
        "adaptive-factors-no-norms",
        "data",
        lambda: mr.adaptive_factors(torch.ones(0)),
        ValueError,
        r"norms must be a non-empty 1-d tensor \[K\]",
        untyped=True,
    ),
    Row(
        "adaptive-factors-2d-norms",
        "type" if TYPECHECKED else "data",
        lambda: mr.adaptive_factors(torch.ones(2, 2)),
        TypeError if TYPECHECKED else ValueError,
        "parameter 'norms'" if TYPECHECKED else r"norms must be a non-empty 1-d tensor",
    ),
    Row(
        "adaptive-factors-2d-norms-untyped",
        "data",
        lambda: mr.adaptive_factors(torch.ones(2, 2)),
        ValueError,
        r"norms must be a non-empty 1-d tensor \[K\]",
        untyped=True,
    ),
    Row(
        "adaptive-factors-negative-norm",
        "data",
        lambda: mr.adaptive_factors(torch.tensor([1.0, -2.0, 3.0])),
        ValueError,
        r"norms must be >= 0 \(gradient norms\), got \[1.0, -2.0",
    ),
    *(
        row
        for i, clamp in enumerate([(0.5,), (0.5, 1.0, 2.0), "wide"])
        for row in (
            Row(
                f"clamp-not-a-pair-{i}",
                "type",
                lambda c=clamp: mr.adaptive(mr.msd(LINF_SMALL), clamp=c),
                TypeError,
                "parameter 'clamp'" if TYPECHECKED else r"clamp must be a pair \(lo, hi\)",
            ),
            Row(
                f"clamp-not-a-pair-{i}-untyped",
                "type",
                lambda c=clamp: mr.adaptive(mr.msd(LINF_SMALL), clamp=c),
                TypeError,
                r"clamp must be a pair \(lo, hi\)",
                untyped=True,
            ),
        )
    ),
    *(
        Row(
            f"{policy}-{key}-{value}",
            "value",
            lambda p=policy, kw={key: value}: getattr(mr, p)(mr.msd(LINF_SMALL), **kw),
            ValueError,
            match,
        )
        for policy, key, value, match in [
            ("fixed", "norm", "linf", "norm must be one of 'l1', 'l2'"),
            ("fixed", "probe_steps", 0, "probe_steps must be an int >= 1"),
            ("adaptive", "probe_steps", 0, "probe_steps must be an int >= 1"),
            ("adaptive", "norm", "L2", "norm must be one of 'l1', 'l2'"),
        ]
    ),
    Row(
        "fixed-around-a-policy",
        "member",
        lambda: mr.fixed(mr.adaptive(mr.max_(LINF_SMALL))),
        TypeError,
        r"a budget policy's aggregator must implement mr.Aggregator .*; Adaptive lacks players",
        untyped=True,
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
