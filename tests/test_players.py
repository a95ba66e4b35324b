"""The built-in players (spec §1): feasibility, idempotent projections, steepest steps, blocking.

Every property runs for l_inf, l_2, l_1 and l_1 with the exact ball-box projection, in float32 and
float64, with scalar and per-example budgets, on random shapes and random inputs that include
coordinates exactly at 0 and 1.
"""

import dataclasses
import math
import pickle

import pytest
import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import fuzzing as fz
import multirobust as mr
from bad_input import Row, refuse, table
from multirobust import _checks
from multirobust.players import l1_eval

KINDS = ("linf", "l2", "l1", "l1-ball-box")
DTYPES = (torch.float32, torch.float64)
# Largest budget / step size drawn per kind (in that kind's own units).
SCALE = {"linf": 1.0, "l2": 4.0, "l1": 20.0, "l1-ball-box": 20.0}


def rtol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 1e-11


def make_player(kind: str, k_min: int = 1, k_max: int = 1) -> mr.Player:
    if kind == "linf":
        return mr.linf(eps=0.1, alpha=0.01)
    if kind == "l2":
        return mr.l2(eps=0.5, alpha=0.05)
    projection = "ball-box" if kind == "l1-ball-box" else "ball"
    return mr.l1(eps=2.0, alpha=0.1, k_min=k_min, k_max=k_max, projection=projection)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_x(shape: tuple[int, ...], dtype: torch.dtype, seed: int, edges: float) -> torch.Tensor:
    """Uniform in [0, 1]; a fraction ``edges`` of the coordinates set exactly to 0 or 1."""
    g = generator(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    u = torch.rand(shape, generator=g, dtype=dtype)
    x = torch.where(u < edges / 2, torch.zeros_like(x), x)
    return torch.where(u > 1 - edges / 2, torch.ones_like(x), x)


@st.composite
def shapes(draw: st.DrawFn) -> tuple[int, ...]:
    b = draw(st.integers(1, 5))
    if draw(st.booleans()):
        return (b, draw(st.integers(1, 24)))
    return (b, draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))


def budgets(b: int, low: float, high: float) -> st.SearchStrategy:
    """A budget: a float, or a list of ``b`` floats (made a per-example tensor by the test)."""
    one = st.floats(low, high, allow_nan=False, allow_infinity=False)
    return st.one_of(one, st.lists(one, min_size=b, max_size=b))


def as_budget(value: float | list[float], dtype: torch.dtype) -> float | torch.Tensor:
    return torch.tensor(value, dtype=dtype) if isinstance(value, list) else value


@st.composite
def cases(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(KINDS))
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes())
    n = math.prod(shape[1:])
    k_max = draw(st.integers(1, min(n, 20)))
    k_min = draw(st.integers(1, k_max))
    scale = SCALE[kind]
    return {
        "kind": kind,
        "dtype": dtype,
        "k": (k_min, k_max),
        "x": random_x(
            shape, dtype, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.0, 0.3, 1.0]))
        ),
        "eps": as_budget(draw(budgets(shape[0], 1e-3, scale)), dtype),
        "alpha": as_budget(draw(budgets(shape[0], 1e-3, scale)), dtype),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def player_of(case: dict) -> mr.Player:
    # Built in the test, not the strategy: beartype's checks draw from `random`.
    return make_player(case["kind"], *case["k"])


def assert_feasible(player: mr.Player, x: torch.Tensor, delta: torch.Tensor, eps) -> None:
    """In the player's ball (up to rounding) and exactly in the [0, 1] box."""
    assert delta.shape == x.shape
    assert delta.dtype == x.dtype
    assert bool(torch.isfinite(delta).all())
    eps_t = torch.as_tensor(eps, dtype=x.dtype).expand(x.shape[0])
    size = player.size(delta)
    bound = eps_t * (1 + rtol(x.dtype)) + torch.finfo(x.dtype).tiny
    assert bool((size <= bound).all()), (size, eps_t)
    adv = x + delta
    assert bool((adv >= 0).all()) and bool((adv <= 1).all()), (adv.min(), adv.max())


# ---------------------------------------------------------------------------------------------
# Feasibility and idempotence
# ---------------------------------------------------------------------------------------------


@given(cases())
def test_init_is_feasible(case: dict) -> None:
    player, x, eps = player_of(case), case["x"], case["eps"]
    delta = player.init(x, eps, generator(case["seed"]))
    assert_feasible(player, x, delta, eps)


@given(cases())
def test_projected_steps_are_feasible(case: dict) -> None:
    player, x, eps, alpha = player_of(case), case["x"], case["eps"], case["alpha"]
    g = generator(case["seed"])
    for start in (torch.zeros_like(x), player.init(x, eps, g)):
        delta = start
        for _ in range(3):
            grad = torch.randn(x.shape, generator=g, dtype=x.dtype)
            delta = player.project(x, player.ascend(x, delta, grad, alpha, player.draw(x, g)), eps)
            assert_feasible(player, x, delta, eps)


@given(cases())
def test_projection_of_any_point_is_feasible_and_idempotent(case: dict) -> None:
    player, x, eps = player_of(case), case["x"], case["eps"]
    g = generator(case["seed"])
    # Far outside the ball and the box, and some points near or inside them.
    for spread in (3 * SCALE[case["kind"]], 0.3, 1e-3):
        raw = spread * torch.randn(x.shape, generator=g, dtype=x.dtype)
        once = player.project(x, raw, eps)
        assert_feasible(player, x, once, eps)
        twice = player.project(x, once, eps)
        assert_feasible(player, x, twice, eps)
        eps_max = float(torch.as_tensor(eps).max())
        tol = 10 * rtol(x.dtype) * max(1.0, eps_max)
        torch.testing.assert_close(twice, once, rtol=0, atol=tol)


@given(cases())
def test_feasible_points_are_left_alone(case: dict) -> None:
    """A feasible delta is its own projection, bit for bit (only examples outside change)."""
    player, x, eps = player_of(case), case["x"], case["eps"]
    delta = player.init(x, eps, generator(case["seed"]))
    eps_t = torch.as_tensor(eps, dtype=x.dtype).expand(x.shape[0])
    inside = player.size(delta) <= eps_t
    projected = player.project(x, delta, eps)
    assert torch.equal(projected[inside], delta[inside])


# ---------------------------------------------------------------------------------------------
# Steepest-ascent directions
# ---------------------------------------------------------------------------------------------


@st.composite
def interior_cases(draw: st.DrawFn) -> dict:
    """x = 0.5 everywhere (nothing blocked), a random gradient, a scalar or per-example step."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes())
    g = generator(draw(st.integers(0, 2**32 - 1)))
    grad = torch.randn(shape, generator=g, dtype=dtype)
    # alpha / k < 0.5 so that x = 0.5 is never blocked for the l1 player.
    alpha = as_budget(draw(budgets(shape[0], 1e-3, 0.45)), dtype)
    k = draw(st.integers(1, min(math.prod(shape[1:]), 20)))
    return {"x": torch.full(shape, 0.5, dtype=dtype), "grad": grad, "alpha": alpha, "k": k}


def unit_step(player: mr.Player, case: dict) -> torch.Tensor:
    """``(ascend(x, 0, g, alpha) - 0) / alpha``, flattened per example."""
    x, grad, alpha = case["x"], case["grad"], case["alpha"]
    step = player.ascend(x, torch.zeros_like(x), grad, alpha, player.draw(x, generator(0)))
    a = torch.as_tensor(alpha, dtype=x.dtype).expand(x.shape[0])
    return step.flatten(1) / a[:, None]


@given(interior_cases())
def test_linf_step_is_steepest(case: dict) -> None:
    e = unit_step(mr.linf, case)
    g = case["grad"].flatten(1)
    torch.testing.assert_close(e.abs().amax(1), torch.ones_like(e[:, 0]))
    inner = (e * g).sum(1)
    torch.testing.assert_close(inner, g.abs().sum(1), rtol=rtol(g.dtype), atol=0)


@given(interior_cases())
def test_l2_step_is_steepest(case: dict) -> None:
    e = unit_step(mr.l2, case)
    g = case["grad"].flatten(1)
    torch.testing.assert_close(e.norm(dim=1), torch.ones_like(e[:, 0]), rtol=rtol(g.dtype), atol=0)
    inner = (e * g).sum(1)
    torch.testing.assert_close(inner, g.norm(dim=1), rtol=rtol(g.dtype), atol=0)


@pytest.mark.parametrize("projection", ["ball", "ball-box"])
@given(case=interior_cases())
def test_l1_step_is_steepest_over_k_coordinates(projection: str, case: dict) -> None:
    g = case["grad"].flatten(1)
    n = g.shape[1]
    k = case["k"]
    magnitudes = g.abs().sort(dim=1, descending=True).values
    if k < n:  # the k largest are well defined only without a tie at the k-th place
        assume(bool((magnitudes[:, k - 1] > magnitudes[:, k]).all()))
    assume(bool((magnitudes[:, k - 1] > 0).all()))
    player = mr.l1(k_min=k, k_max=k, alpha=0.4, projection=projection)
    e = unit_step(player, case)
    tol = rtol(g.dtype)
    torch.testing.assert_close(e.abs().sum(1), torch.ones_like(e[:, 0]), rtol=tol, atol=0)
    assert bool(((e != 0).sum(1) == k).all())
    inner = (e * g).sum(1)
    torch.testing.assert_close(inner, magnitudes[:, :k].mean(1), rtol=tol, atol=0)
    if k == 1:
        torch.testing.assert_close(inner, g.abs().amax(1), rtol=tol, atol=0)


def test_l1_draws_every_k_in_its_range() -> None:
    player = mr.l1(k_min=2, k_max=4, alpha=0.1)
    g = generator(0)
    ks = {int(player.draw_k(g, torch.device("cpu"))) for _ in range(200)}
    assert ks == {2, 3, 4}


@pytest.mark.parametrize("dtype", DTYPES)
def test_l2_zero_gradient_gives_zero_step(dtype: torch.dtype) -> None:
    x = torch.full((3, 2, 2, 2), 0.5, dtype=dtype)
    delta = 0.01 * torch.randn(x.shape, generator=generator(0), dtype=dtype)
    grad = torch.randn(x.shape, generator=generator(1), dtype=dtype)
    grad[1] = 0  # one example with a zero gradient in a batch with nonzero ones
    for alpha in (0.1, torch.tensor([0.1, 0.2, 0.3], dtype=dtype)):
        stepped = mr.l2.ascend(x, delta, grad, alpha)
        assert bool(torch.isfinite(stepped).all())
        assert torch.equal(stepped[1], delta[1])
        assert not torch.equal(stepped[0], delta[0])
    zero = mr.l2.ascend(x, torch.zeros_like(x), torch.zeros_like(x), 0.1)
    assert torch.equal(zero, torch.zeros_like(x))


# ---------------------------------------------------------------------------------------------
# l1 blocking at the edges of the box
# ---------------------------------------------------------------------------------------------


@st.composite
def edge_cases(draw: st.DrawFn) -> dict:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(shapes())
    n = math.prod(shape[1:])
    k = draw(st.integers(1, min(n, 20)))
    x = random_x(shape, dtype, draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.3, 0.7])))
    grad = torch.randn(shape, generator=generator(draw(st.integers(0, 2**32 - 1))), dtype=dtype)
    alpha = draw(st.floats(1e-3, 0.45 * k))
    return {"x": x, "grad": grad, "k": k, "alpha": alpha, "dtype": dtype}


@pytest.mark.parametrize("projection", ["ball", "ball-box"])
@given(case=edge_cases())
def test_l1_never_moves_blocked_coordinates(projection: str, case: dict) -> None:
    x, grad, k, alpha = case["x"], case["grad"], case["k"], case["alpha"]
    player = mr.l1(k_min=k, k_max=k, alpha=alpha, projection=projection)
    gap = alpha / k
    zero = torch.zeros_like(x)
    step = player.ascend(x, zero, grad, alpha, player.draw(x, generator(0)))
    # At the very edge: x = 0 with a negative gradient, x = 1 with a positive one.
    at_edge = ((x == 0) & (grad < 0)) | ((x == 1) & (grad > 0))
    # Within the gap (with a margin, so rounding cannot decide the case).
    near_edge = ((x <= 0.99 * gap) & (grad < 0)) | ((x >= 1 - 0.99 * gap) & (grad > 0))
    assert bool((step[at_edge | near_edge] == 0).all())
    # Clearly free coordinates (a margin again): then the step moves its whole mass alpha.
    free = ~((x <= 1.01 * gap) & (grad < 0) | (x >= 1 - 1.01 * gap) & (grad > 0)) & (grad != 0)
    moved = step.flatten(1).abs().sum(1)
    has_free = free.flatten(1).any(1)
    torch.testing.assert_close(
        moved[has_free], torch.full_like(moved[has_free], alpha), rtol=rtol(x.dtype), atol=0
    )
    # After the projection, blocked coordinates at the edge still have not moved.
    projected = player.project(x, step, alpha / 2)
    assert bool((projected[at_edge] == 0).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_explicit_gap_zero_blocks_only_the_edges(dtype: torch.dtype) -> None:
    x = torch.tensor([[0.0, 1.0, 1e-6, 0.5]], dtype=dtype)
    grad = torch.tensor([[-4.0, 3.0, -2.0, 1.0]], dtype=dtype)
    player = mr.l1(k_min=2, k_max=2, alpha=0.1, gap=0.0)
    step = player.ascend(x, torch.zeros_like(x), grad, 0.1)
    expected = torch.tensor([[0.0, 0.0, -0.05, 0.05]], dtype=dtype)
    torch.testing.assert_close(step, expected)
    # With the default gap (alpha / k = 0.05) the coordinate at 1e-6 is blocked too.
    step = mr.l1(k_min=2, k_max=2, alpha=0.1).ascend(x, torch.zeros_like(x), grad, 0.1)
    torch.testing.assert_close(step, torch.tensor([[0.0, 0.0, 0.0, 0.1]], dtype=dtype))


# ---------------------------------------------------------------------------------------------
# Players as values: frozen, comparable, printable, picklable, hashable, callable
# ---------------------------------------------------------------------------------------------

PLAYERS = [mr.linf, mr.l2, mr.l1, mr.l1(projection="ball-box")]
PLAYER_IDS = list(KINDS)


@pytest.mark.parametrize("player", PLAYERS, ids=PLAYER_IDS)
def test_player_is_a_frozen_value(player: mr.Player) -> None:
    assert isinstance(player, mr.Player)
    with pytest.raises(dataclasses.FrozenInstanceError):
        player.eps = 1.0  # type: ignore[misc]
    assert player == player(eps=player.eps)
    assert player != player(eps=player.eps / 2)
    assert hash(player) == hash(player(eps=player.eps))
    assert len({player, player(), player(eps=player.eps / 2)}) == 2
    assert pickle.loads(pickle.dumps(player)) == player
    text = repr(player)
    assert type(player).__name__ in text and f"eps={player.eps!r}" in text
    assert str(player) == text


def test_player_equality_across_defaults() -> None:
    assert mr.linf(eps=0.03) == mr.linf
    assert mr.l2(eps=0.5, rel_alpha=0.1) == mr.l2
    assert mr.l2(eps=0.5, alpha=0.05) != mr.l2  # same step, but it stays put when eps changes
    assert mr.l2(eps=0.5, alpha=0.05).alpha == mr.l2.alpha
    assert mr.l1(k_min=5, k_max=20) == mr.l1
    assert mr.linf != mr.l2
    assert mr.l1 != mr.l1(projection="ball-box")
    assert mr.linf(eps=1).eps == 1.0 and isinstance(mr.linf(eps=1).eps, float)


@pytest.mark.parametrize("player", PLAYERS, ids=PLAYER_IDS)
def test_calling_a_player_returns_a_changed_copy(player: mr.Player) -> None:
    before = dataclasses.asdict(player)  # type: ignore[call-overload]
    changed = player(eps=player.eps * 2, steps=7, restarts=3)
    assert changed is not player
    assert (changed.eps, changed.steps, changed.restarts) == (player.eps * 2, 7, 3)
    # a relative step size follows the budget, an absolute one stays
    scale = 2 if player.rel_alpha is not None else 1  # type: ignore[attr-defined]
    assert changed.alpha == pytest.approx(player.alpha * scale) and changed.name == player.name
    assert dataclasses.asdict(player) == before  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        player(no_such_setting=1)


def test_module_level_defaults_are_the_papers() -> None:
    assert (mr.linf.eps, mr.linf.alpha, mr.linf.steps) == (0.03, 0.003, 40)
    assert (mr.l2.eps, mr.l2.alpha, mr.l2.steps) == (0.5, 0.05, 50)
    assert (mr.l1.eps, mr.l1.alpha, mr.l1.steps) == (12.0, 1.0, 50)
    assert (mr.l1.k_min, mr.l1.k_max, mr.l1.gap, mr.l1.projection) == (5, 20, None, "ball")
    assert {p.name for p in (mr.linf, mr.l2, mr.l1)} == {"linf", "l2", "l1"}


def test_l1_draws_its_k_before_the_step_and_l1_eval_takes_it_from_delta():
    x, g = torch.rand(2, 1, 4, 4), torch.Generator().manual_seed(0)
    k = mr.l1(alpha=0.5, k_min=2, k_max=4).draw(x, g)
    assert k.dim() == 0 and 2 <= int(k) <= 4
    assert mr.l1_eval.draw(x, g) is None  # its k comes from delta
    assert mr.linf.draw(x, g) is None and mr.l2.draw(x, g) is None


def test_step_sizes_follow_the_budget_unless_given():
    assert mr.linf.alpha == 0.003 and mr.l2.alpha == 0.05 and mr.l1.alpha == 1.0  # the paper's
    assert mr.linf(eps=0.1).alpha == pytest.approx(0.01)
    assert mr.l2(eps=2.0).alpha == pytest.approx(0.2)
    assert mr.l1(eps=6.0).alpha == pytest.approx(0.5)
    fixed_step = mr.linf(alpha=0.02)
    assert fixed_step.rel_alpha is None and fixed_step(eps=0.3).alpha == 0.02  # absolute stays
    assert mr.linf(eps=0.1, rel_alpha=0.25).alpha == pytest.approx(0.025)
    assert fixed_step(rel_alpha=0.5).alpha == pytest.approx(0.015)  # relative again
    with pytest.raises(ValueError, match="not both"):
        mr.linf(alpha=0.01, rel_alpha=0.1)


def test_l2_step_is_scale_invariant():
    """A gradient scaled by 1e-30 (its float32 squares underflow) still gives a step of
    length alpha along it; so does one scaled by 1e30."""
    x = torch.full((3, 1, 4, 4), 0.5)
    g = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    p = mr.l2(eps=1.0, alpha=0.1)
    reference = p.ascend(x, torch.zeros_like(x), g, 0.1, None)
    for scale in (1e-30, 1e-40, 1e30):
        step = p.ascend(x, torch.zeros_like(x), g * scale, 0.1, None)
        torch.testing.assert_close(step, reference, rtol=1e-4, atol=1e-6)
    assert bool((p.ascend(x, torch.zeros_like(x), torch.zeros_like(g), 0.1, None) == 0).all())


# ---------------------------------------------------------------------------------------------
# Players composed, with what a user may pass (hypothesis): float32, float64 and bfloat16, scalar,
# 0-d and per-example budgets; random bad budgets and settings refused by name
# ---------------------------------------------------------------------------------------------


@st.composite
def player_cases(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(fz.KINDS))
    dtype = draw(st.sampled_from(fz.PLAYER_DTYPES))
    if draw(st.booleans()):
        shape: tuple[int, ...] = (draw(st.integers(1, 4)), draw(st.integers(1, 40)))
    else:
        shape = draw(fz.image_shapes())
    n = math.prod(shape[1:])
    unit = fz.diameter(kind, n)
    return {
        "kind": kind,
        "dtype": dtype,
        "shape": shape,
        "settings": draw(fz.player_settings(kind, n)),
        "edges": draw(st.sampled_from([0.0, 0.3, 1.0])),
        "eps": fz.budget(draw, shape[0], 1e-3 * unit, 1.5 * unit, dtype),
        "alpha": fz.budget(draw, shape[0], 1e-3 * unit, 1.5 * unit, dtype),
        "zero_grad": draw(st.sampled_from([0.0, 0.5, 1.0])),  # share of exactly-zero gradients
        "spread": draw(st.sampled_from([1e-3, 0.3, 3.0])) * unit,
        "seed": draw(fz.SEEDS),
    }


@settings(max_examples=fz.examples(80), deadline=None)
@given(player_cases())
def test_player_operations_compose(case: dict) -> None:
    player = fz.make_player(case["kind"], case["settings"])
    dtype, shape, eps, alpha = case["dtype"], case["shape"], case["eps"], case["alpha"]
    x = fz.random_x(shape, dtype, case["seed"], case["edges"])
    g = fz.generator(case["seed"])

    start = player.init(x, eps, g)
    fz.assert_feasible_delta(player, x, start, eps)
    assert torch.equal(player.init(x, eps, fz.generator(case["seed"])), start)  # from g alone
    delta = torch.zeros_like(x)
    for _ in range(2):  # from zero: ascend, then project, twice
        grad = torch.randn(shape, generator=g).to(dtype)
        grad = grad * (torch.rand(shape, generator=g) >= case["zero_grad"])
        stepped = player.ascend(x, delta, grad, alpha, player.draw(x, g))
        assert stepped.shape == shape and stepped.dtype == dtype
        assert bool(torch.isfinite(stepped).all())
        delta = player.project(x, stepped, eps)
        fz.assert_feasible_delta(player, x, delta, eps)
    # Any point, far outside or near the ball and the box.
    raw = (case["spread"] * torch.randn(shape, generator=g)).to(dtype)
    projected = player.project(x, raw, eps)
    fz.assert_feasible_delta(player, x, projected, eps)

    for d in (start, delta, raw):
        size = player.size(d)
        assert size.shape == (shape[0],) and size.dtype == dtype
        assert bool(torch.isfinite(size).all()) and bool((size >= 0).all())
    # apply: x + delta for a feasible delta, always in the box, gradient passed straight through.
    assert torch.equal(player.apply(x, projected), x + projected)
    adv = player.apply(x, raw)
    assert adv.shape == shape and adv.dtype == dtype
    fz.assert_in_box(adv)
    weights = torch.randn(shape, generator=g).to(dtype)
    grad_raw = torch.func.grad(lambda d: (weights * player.apply(x, d)).sum())(raw)
    assert torch.equal(grad_raw, weights)


@settings(max_examples=fz.examples(20), deadline=None)
@given(n=st.integers(257, 1100), ratio=st.sampled_from([0.9, 0.99]), seed=fz.SEEDS)
@example(n=259, ratio=0.99, seed=0)
def test_l1_projection_in_bfloat16_on_large_inputs(n: int, ratio: float, seed: int) -> None:
    """Near-uniform rows just outside the ball: every coordinate is active, rho = n."""
    g = fz.generator(seed)
    x = torch.full((2, n), 0.5, dtype=torch.bfloat16)
    v = (0.4 + 0.01 * torch.rand((2, n), generator=g)).to(torch.bfloat16)
    eps = ratio * float(v.float().abs().sum(1).min())
    for projection in ("ball", "ball-box"):
        player = mr.l1(projection=projection)
        fz.assert_feasible_delta(player, x, player.project(x, v, eps), eps)


# ---------------------------------------------------------------------------------------------
# PGD on tiny models
# ---------------------------------------------------------------------------------------------


@settings(max_examples=fz.examples(40), deadline=None)
@given(
    kind=st.sampled_from(fz.KINDS),
    field=st.sampled_from(["eps", "alpha"]),
    value=st.one_of(fz.BAD_NUMBERS, fz.NOT_NUMBERS, st.none()),
)
def test_players_reject_bad_budgets(kind: str, field: str, value: object) -> None:
    base = {"linf": mr.linf, "l2": mr.l2}.get(kind, mr.l1(alpha=0.5))
    # alpha=None without rel_alpha: "linf: pass alpha (an absolute step size) or rel_alpha ..."
    ours = rf"\b{base.name}(\.{field}\b|: pass {field}\b)"
    fz.assert_rejected(lambda: base(**{field: value}), field, ours)


@settings(max_examples=fz.examples(40), deadline=None)
@given(
    field=st.sampled_from(["steps", "restarts", "k_min", "k_max", "gap", "projection"]),
    value=st.one_of(
        st.integers(-5, 0), st.floats(-2.0, 2.0), st.sampled_from(["1", None, math.nan, True])
    ),
)
def test_l1_rejects_bad_settings(field: str, value: object) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    valid = {
        "restarts": value == 0 and isinstance(value, int) and not isinstance(value, bool),
        "gap": value is None or (number and 0 <= value < 0.5),  # type: ignore[operator]
    }
    if valid.get(field, False):
        return
    player = mr.l1(alpha=0.5, k_min=2, k_max=4)
    ours = r"\bl1\b.*\bgap\b" if field == "gap" else rf"\bl1\.{field}\b"
    fz.assert_rejected(lambda: player(**{field: value}), field, ours)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

BUILT_IN = {"linf": mr.linf, "l2": mr.l2, "l1": mr.l1}


def _l1_attack() -> object:
    """PGD with l1's default k_max (20) on inputs of 16 coordinates."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    return mr.pgd(mr.l1(steps=1))(net, x, torch.tensor([0, 1, 2, 0]))


BAD_INPUT = [
    *(
        Row(
            f"{name}-{field}-{value}",
            "value",
            lambda p=player, kw={field: value}: p(**kw),
            ValueError,
            rf"{name}\.{field} must be a finite number > 0",
        )
        for name, player in BUILT_IN.items()
        for field in ("eps", "alpha")
        for value in (0.0, -1.0, math.nan, math.inf, -math.inf)
    ),
    *(
        Row(f"{name}-eps-a-string", "type", lambda p=player: p(eps="0.1"), TypeError, "eps")
        for name, player in BUILT_IN.items()
    ),
    # Our own message (the annotation `eps: float` catches it first in the test run):
    Row(
        "check-eps-a-string",
        "type",
        lambda: _checks.positive_finite("eps", "0.1"),
        TypeError,
        "eps must be a real number",
    ),
    *(
        Row(
            f"{name}-{field}-{value}",
            "value",
            lambda p=player, kw={field: value}: p(**kw),
            ValueError,
            rf"{name}\.{field} must be an int >= {low}",
        )
        for name, player in BUILT_IN.items()
        for field, value, low in (("steps", 0, 1), ("restarts", -1, 0))
    ),
    Row(
        "l1-k_min-above-k_max",
        "value",
        lambda: mr.l1(k_min=6, k_max=5),
        ValueError,
        r"l1\.k_min must be <= k_max",
    ),
    *(
        Row(
            f"l1-{field}-0",
            "value",
            lambda kw={field: 0}: mr.l1(**kw),
            ValueError,
            rf"l1\.{field} must be an int >= 1",
        )
        for field in ("k_min", "k_max")
    ),
    Row(
        "l1-gap-0.5",
        "value",
        lambda: mr.l1(gap=0.5),
        ValueError,
        r"^l1\.gap must be below 0\.5, got 0\.5: the blocked",
    ),
    Row(
        "l1-blocking-gap-of-alpha-over-k_min",
        "value",
        lambda: mr.l1(alpha=3.0, k_min=5),
        ValueError,
        r"alpha / k_min = 3 / 5 = 0\.6 \(gap is None\)",
    ),
    Row(
        "l1-gap-negative",
        "value",
        lambda: mr.l1(gap=-0.1),
        ValueError,
        r"l1\.gap must be a number >= 0",
    ),
    Row(
        "l1-unknown-projection",
        "value",
        lambda: mr.l1(projection="box"),
        ValueError,
        r"l1\.projection must be one of 'ball', 'ball-box'",
    ),
    Row(
        "l1-k_max-above-the-coordinates",
        "data",
        _l1_attack,
        ValueError,
        r"l1\.k_max=20 is larger than the 16 coordinates",
    ),
    *(
        Row(
            f"{type(p).__name__}-unknown-setting",
            "value",
            lambda p=p: p(epsilon=0.1),
            TypeError,
            r"has no setting 'epsilon'; its settings are eps, alpha",
        )
        for p in (mr.linf, mr.l2, mr.l1, l1_eval)
    ),
    Row(
        "empty-name",
        "value",
        lambda: mr.linf(name=""),
        ValueError,
        "name must be a non-empty string",
    ),
    *(
        Row(
            f"l1_eval-{'-'.join(map(str, changes.values()))}",
            "value",
            lambda kw=changes: l1_eval(**kw),
            ValueError,
            match,
        )
        for changes, match in [
            ({"shrink": 0.5}, r"l1\.shrink must be a number >= 1"),
            ({"gap": 0.6}, r"l1\.gap must be None or in \[0, 0\.5\)"),
            ({"k_min": 5, "k_max": 2}, r"l1\.k_max must be an int >= 5"),
            ({"projection": "box"}, r"l1\.projection must be one of 'ball', 'ball-box'"),
        ]
    ),
    Row(
        "alpha-and-rel_alpha",
        "value",
        lambda: mr.linf(alpha=0.01, rel_alpha=0.1),
        ValueError,
        "not both",
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
