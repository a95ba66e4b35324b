"""Fuzzing the public API across its pieces (issue 8): random shapes, dtypes, budgets and seeds.

The per-piece properties live next to each piece (tests/test_players.py, test_projections.py,
test_pgd.py, test_game.py); this file drives the public functions together, with what a user may
pass: players in float32, float64 and bfloat16 with scalar, 0-d and per-example budgets; PGD on
tiny models of random input shapes; every aggregator with random players and budgets; fixed and
adaptive games through ``Trainer.step``; ``evaluate``. Outputs must be finite, of the right shape
and dtype, and feasible for the player that made them. Random bad values must be rejected by our
own TypeError or ValueError naming the argument (or by the type checker the test run applies,
jaxtyping + beartype, naming the parameter; see tests/test_bad_input.py).

Sized for the default CI run on 2 CPU cores (``HYPOTHESIS_PROFILE=thorough`` scales the example
counts up tenfold).
"""

import math
import os
import re
import statistics
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st
from jaxtyping import TypeCheckError
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import multirobust as mr
from typechecking import untyped

KINDS = ("linf", "l2", "l1", "l1-ball-box")
DTYPES = (torch.float32, torch.float64)
PLAYER_DTYPES = (torch.float32, torch.float64, torch.bfloat16)
SEEDS = st.integers(0, 2**32 - 1)


def measured(norms: torch.Tensor) -> mr.Measurements:
    """Measurements with these gradient norms (and zero losses)."""
    return mr.Measurements(torch.zeros_like(norms), norms)


def examples(n: int) -> int:
    """``n`` examples under the default profile (40 examples), scaled with the loaded profile."""
    return max(1, n * settings().max_examples // 40)


def rtol(dtype: torch.dtype) -> float:
    """Relative slack of a budget: a few roundings of the dtype (bf16 has 8 bits of mantissa)."""
    return {torch.float32: 1e-5, torch.float64: 1e-11, torch.bfloat16: 2e-2}[dtype]


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_x(shape: tuple[int, ...], dtype: torch.dtype, seed: int, edges: float) -> torch.Tensor:
    """Uniform in [0, 1]; a share ``edges`` of the coordinates exactly 0 or 1."""
    g = generator(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    x = torch.where(u < edges / 2, 0.0, torch.where(u > 1 - edges / 2, 1.0, x))
    return x.to(dtype)


def diameter(kind: str, n: int) -> float:
    """The diameter of the [0, 1]^n box in the kind's norm: the natural unit of its budget."""
    return {"linf": 1.0, "l2": math.sqrt(n)}.get(kind, float(n))


def make_player(kind: str, p: dict, name: str | None = None) -> mr.Player:
    """A player of ``kind`` from drawn settings ``p`` (built in the test: beartype's checks draw
    from ``random``, which hypothesis forbids inside strategies)."""
    common = {"eps": p["eps"], "alpha": p["alpha"], "steps": p["steps"], "restarts": p["restarts"]}
    if name is not None:
        common["name"] = name
    if kind == "linf":
        return mr.linf(**common)
    if kind == "l2":
        return mr.l2(**common)
    projection = "ball-box" if kind == "l1-ball-box" else "ball"
    return mr.l1(**common, k_min=p["k_min"], k_max=p["k_max"], gap=p["gap"], projection=projection)


@st.composite
def player_settings(draw: st.DrawFn, kind: str, n: int, high: float = 1.5) -> dict:
    """Valid settings of a ``kind`` player for inputs of ``n`` coordinates.

    The budget is a share of the box's diameter in [1e-3, ``high``]; l_1's ``k_max <= n`` and its
    blocking gap stays below 0.5 (an explicit gap, or ``alpha / k_min`` when it is None).
    """
    unit = diameter(kind, n)
    eps = draw(st.floats(1e-3, high)) * unit
    p = {
        "eps": eps,
        "alpha": draw(st.floats(0.05, 1.0)) * eps,
        "steps": draw(st.integers(1, 3)),
        "restarts": draw(st.integers(0, 1)),
    }
    if kind.startswith("l1"):
        p["k_max"] = draw(st.integers(1, min(n, 20)))
        p["k_min"] = draw(st.integers(1, p["k_max"]))
        p["gap"] = draw(st.one_of(st.none(), st.floats(0.0, 0.45)))
        if p["gap"] is None:
            p["alpha"] = min(p["alpha"], 0.45 * p["k_min"])
    return p


def budget(draw: st.DrawFn, b: int, low: float, high: float, dtype: torch.dtype):
    """A budget as a user passes it: a float, a 0-d tensor or a per-example tensor ``[b]``."""
    form = draw(st.sampled_from(["float", "0-d", "[b]"]))
    if form == "[b]":
        values = draw(st.lists(st.floats(low, high), min_size=b, max_size=b))
        return torch.tensor(values, dtype=dtype)
    value = draw(st.floats(low, high))
    return value if form == "float" else torch.tensor(value, dtype=dtype)


def per_example(value, x: torch.Tensor) -> torch.Tensor:
    """A budget as the float64 vector ``[b]`` the player sees (rounded to ``x``'s dtype first)."""
    return torch.as_tensor(value, dtype=x.dtype).double().expand(x.shape[0])


def assert_in_box(z: torch.Tensor) -> None:
    assert bool(torch.isfinite(z).all())
    assert bool(((z >= 0) & (z <= 1)).all()), (float(z.min()), float(z.max()))


def assert_feasible_delta(player: mr.Player, x: torch.Tensor, delta: torch.Tensor, eps) -> None:
    """``delta`` finite, of ``x``'s shape and dtype, in the player's ball and exactly in the box."""
    assert delta.shape == x.shape and delta.dtype == x.dtype
    assert bool(torch.isfinite(delta).all())
    eps_t = per_example(eps, x)
    size = player.size(delta.double())
    assert bool((size <= eps_t * (1 + rtol(x.dtype)) + 1e-30).all()), (size, eps_t)
    assert_in_box(x + delta)


def feasible_inputs(player: mr.Player, x: torch.Tensor, x_adv: torch.Tensor, eps) -> torch.Tensor:
    """Per example: is the adversarial input ``x_adv`` in the box and in the player's ball?

    ``x_adv = clip(x + delta)`` rounds each coordinate once, so the size of ``x_adv - x`` may
    exceed that of ``delta`` by one rounding per coordinate.
    """
    eps_t = per_example(eps, x)
    n = x[0].numel()
    slack = eps_t * rtol(x.dtype) + n * torch.finfo(x.dtype).eps
    size = player.size(x_adv.double() - x.double())
    in_box = ((x_adv >= 0) & (x_adv <= 1)).flatten(1).all(1)
    return in_box & (size <= eps_t + slack)


def tiny_model(n: int, classes: int, dtype: torch.dtype, seed: int, hidden: int = 0) -> nn.Module:
    """Flatten + Linear (+ a ReLU layer when ``hidden``), with random weights from ``seed``."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten()]
    if hidden:
        layers += [nn.Linear(n, hidden), nn.ReLU()]
    layers.append(nn.Linear(hidden or n, classes))
    return nn.Sequential(*layers).to(dtype)


def labels(b: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (b,), generator=generator(seed))


@st.composite
def image_shapes(draw: st.DrawFn, b_min: int = 1) -> tuple[int, int, int, int]:
    """Small ``[b, c, h, w]``."""
    b = draw(st.integers(b_min, 4))
    return (b, draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))


# ---------------------------------------------------------------------------------------------
# Players: init, ascend, project, apply, size
# ---------------------------------------------------------------------------------------------


@st.composite
def player_cases(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(KINDS))
    dtype = draw(st.sampled_from(PLAYER_DTYPES))
    if draw(st.booleans()):
        shape: tuple[int, ...] = (draw(st.integers(1, 4)), draw(st.integers(1, 40)))
    else:
        shape = draw(image_shapes())
    n = math.prod(shape[1:])
    unit = diameter(kind, n)
    return {
        "kind": kind,
        "dtype": dtype,
        "shape": shape,
        "settings": draw(player_settings(kind, n)),
        "edges": draw(st.sampled_from([0.0, 0.3, 1.0])),
        "eps": budget(draw, shape[0], 1e-3 * unit, 1.5 * unit, dtype),
        "alpha": budget(draw, shape[0], 1e-3 * unit, 1.5 * unit, dtype),
        "zero_grad": draw(st.sampled_from([0.0, 0.5, 1.0])),  # share of exactly-zero gradients
        "spread": draw(st.sampled_from([1e-3, 0.3, 3.0])) * unit,
        "seed": draw(SEEDS),
    }


@settings(max_examples=examples(80), deadline=None)
@given(player_cases())
def test_player_operations_compose(case: dict) -> None:
    player = make_player(case["kind"], case["settings"])
    dtype, shape, eps, alpha = case["dtype"], case["shape"], case["eps"], case["alpha"]
    x = random_x(shape, dtype, case["seed"], case["edges"])
    g = generator(case["seed"])

    start = player.init(x, eps, g)
    assert_feasible_delta(player, x, start, eps)
    assert torch.equal(player.init(x, eps, generator(case["seed"])), start)  # from g alone
    delta = torch.zeros_like(x)
    for _ in range(2):  # from zero: ascend, then project, twice
        grad = torch.randn(shape, generator=g).to(dtype)
        grad = grad * (torch.rand(shape, generator=g) >= case["zero_grad"])
        stepped = player.ascend(x, delta, grad, alpha, player.draw(x, g))
        assert stepped.shape == shape and stepped.dtype == dtype
        assert bool(torch.isfinite(stepped).all())
        delta = player.project(x, stepped, eps)
        assert_feasible_delta(player, x, delta, eps)
    # Any point, far outside or near the ball and the box.
    raw = (case["spread"] * torch.randn(shape, generator=g)).to(dtype)
    projected = player.project(x, raw, eps)
    assert_feasible_delta(player, x, projected, eps)

    for d in (start, delta, raw):
        size = player.size(d)
        assert size.shape == (shape[0],) and size.dtype == dtype
        assert bool(torch.isfinite(size).all()) and bool((size >= 0).all())
    # apply: x + delta for a feasible delta, always in the box, gradient passed straight through.
    assert torch.equal(player.apply(x, projected), x + projected)
    adv = player.apply(x, raw)
    assert adv.shape == shape and adv.dtype == dtype
    assert_in_box(adv)
    weights = torch.randn(shape, generator=g).to(dtype)
    grad_raw = torch.func.grad(lambda d: (weights * player.apply(x, d)).sum())(raw)
    assert torch.equal(grad_raw, weights)


@settings(max_examples=examples(20), deadline=None)
@given(n=st.integers(257, 1100), ratio=st.sampled_from([0.9, 0.99]), seed=SEEDS)
@example(n=259, ratio=0.99, seed=0)
def test_l1_projection_in_bfloat16_on_large_inputs(n: int, ratio: float, seed: int) -> None:
    """Near-uniform rows just outside the ball: every coordinate is active, rho = n."""
    g = generator(seed)
    x = torch.full((2, n), 0.5, dtype=torch.bfloat16)
    v = (0.4 + 0.01 * torch.rand((2, n), generator=g)).to(torch.bfloat16)
    eps = ratio * float(v.float().abs().sum(1).min())
    for projection in ("ball", "ball-box"):
        player = mr.l1(projection=projection)
        assert_feasible_delta(player, x, player.project(x, v, eps), eps)


# ---------------------------------------------------------------------------------------------
# PGD on tiny models
# ---------------------------------------------------------------------------------------------


@st.composite
def pgd_cases(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(KINDS))
    shape = draw(image_shapes())
    n = math.prod(shape[1:])
    dtype = draw(st.sampled_from(DTYPES))
    unit = diameter(kind, n)
    override = draw(st.sampled_from(["none", "eps", "both"]))
    return {
        "kind": kind,
        "shape": shape,
        "dtype": dtype,
        "settings": draw(player_settings(kind, n)),
        "steps": draw(st.one_of(st.none(), st.integers(1, 3))),
        "restarts": draw(st.one_of(st.none(), st.integers(0, 2))),
        "keep": draw(st.sampled_from(["max-loss", "first-success"])),
        "eps": budget(draw, shape[0], 1e-3 * unit, unit, dtype) if override != "none" else None,
        "alpha": budget(draw, shape[0], 1e-3 * unit, unit, dtype) if override == "both" else None,
        "classes": draw(st.integers(2, 4)),
        "hidden": draw(st.sampled_from([0, 8])),
        "edges": draw(st.sampled_from([0.0, 0.3])),
        "seed": draw(SEEDS),
    }


@settings(max_examples=examples(40), deadline=None)
@given(pgd_cases())
def test_pgd_is_finite_feasible_and_repeatable(case: dict) -> None:
    shape, dtype, classes, seed = case["shape"], case["dtype"], case["classes"], case["seed"]
    player = make_player(case["kind"], case["settings"])
    model = tiny_model(math.prod(shape[1:]), classes, dtype, seed, case["hidden"])
    x, y = random_x(shape, dtype, seed, case["edges"]), labels(shape[0], classes, seed)
    attack = mr.pgd(player, case["steps"], case["restarts"], case["keep"])
    budgets = {"eps": case["eps"], "alpha": case["alpha"]}

    result = attack.run(model, x, y, **budgets, seed=seed)
    x_adv = result.delta
    assert x_adv.shape == shape and x_adv.dtype == dtype
    assert_in_box(x_adv)
    eps = player.eps if case["eps"] is None else case["eps"]
    assert bool(feasible_inputs(player, x, x_adv, eps).all())
    # The loss and success it reports are those of the adversarial input it returns.
    with torch.no_grad():
        logits, clean = model(x_adv), model(x)
    assert result.loss.shape == (shape[0],) and bool(torch.isfinite(result.loss).all())
    torch.testing.assert_close(result.loss, F.cross_entropy(logits.float(), y, reduction="none"))
    assert torch.equal(result.success, logits.argmax(1) != y)
    if case["keep"] == "max-loss":  # run 0 starts at delta = 0, which competes
        clean_loss = F.cross_entropy(clean.float(), y, reduction="none")
        assert bool((result.loss >= clean_loss - 1e-5 * (1 + clean_loss)).all())
    else:  # an example misclassified without attack is broken at once
        assert bool(result.success[clean.argmax(1) != y].all())
    # Same seed (or a generator seeded alike), same adversarial inputs.
    again = attack(model, x, y, **budgets, generator=generator(seed))
    assert torch.equal(again, x_adv)


# ---------------------------------------------------------------------------------------------
# Aggregators
# ---------------------------------------------------------------------------------------------


@st.composite
def games(draw: st.DrawFn, n: int) -> dict:
    """An aggregator's recipe: 1 to 3 distinct kinds of players with random settings."""
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True))
    return {
        "aggregator": draw(st.sampled_from(["max", "avg", "msd"])),
        "msd_steps": draw(st.integers(1, 3)),
        "kinds": kinds,
        "players": [draw(player_settings(k, n)) for k in kinds],
    }


def build_aggregator(game: dict):
    """The aggregator of a ``games`` recipe (l1 and l1-ball-box get distinct names)."""
    players = [
        make_player(k, p, name=k) for k, p in zip(game["kinds"], game["players"], strict=True)
    ]
    if game["aggregator"] == "max":
        return mr.max_(*players)
    if game["aggregator"] == "avg":
        return mr.avg(*players)
    return mr.msd(*players, steps=game["msd_steps"])


def assert_adversarial_batch(
    aggregator, x: torch.Tensor, y: torch.Tensor, adv: torch.Tensor, adv_y: torch.Tensor, eps
) -> torch.Tensor:
    """The aggregator's training batch is feasible: AVG's p-th block for player p, each example
    of MAX and MSD for at least one player. Returns ``[K, b]``: feasible for player p."""
    players, k, b = aggregator.players, len(aggregator.players), x.shape[0]
    assert adv.dtype == x.dtype
    assert_in_box(adv)
    if isinstance(aggregator, mr.Avg):
        assert adv.shape == (k * b, *x.shape[1:]) and torch.equal(adv_y, y.repeat(k))
        blocks = adv.view(k, *x.shape)
        ok = torch.stack([feasible_inputs(p, x, blocks[i], eps[i]) for i, p in enumerate(players)])
        assert bool(ok.all()), ok
        return ok
    assert adv.shape == x.shape and torch.equal(adv_y, y)
    ok = torch.stack([feasible_inputs(p, x, adv, eps[i]) for i, p in enumerate(players)])
    assert bool(ok.any(0).all()), ok
    return ok


@st.composite
def aggregator_cases(draw: st.DrawFn) -> dict:
    shape = draw(image_shapes())
    game = draw(games(math.prod(shape[1:])))
    k = len(game["kinds"])
    # Budgets [K] as a policy passes them (float32), from a tenth to twice the players' own.
    factors = draw(st.one_of(st.none(), st.lists(st.floats(0.1, 2.0), min_size=k, max_size=k)))
    return {
        "shape": shape,
        "dtype": draw(st.sampled_from(DTYPES)),
        "game": game,
        "factors": factors,
        "classes": draw(st.integers(2, 4)),
        "hidden": draw(st.sampled_from([0, 8])),
        "seed": draw(SEEDS),
    }


@settings(max_examples=examples(40), deadline=None)
@given(aggregator_cases())
def test_aggregators_make_feasible_batches(case: dict) -> None:
    shape, dtype, classes, seed = case["shape"], case["dtype"], case["classes"], case["seed"]
    aggregator = build_aggregator(case["game"])
    k = len(aggregator.players)
    model = tiny_model(math.prod(shape[1:]), classes, dtype, seed, case["hidden"])
    x, y = random_x(shape, dtype, seed, 0.3), labels(shape[0], classes, seed)
    eps0, alpha0 = aggregator.base_budgets()
    if case["factors"] is None:
        eps = alpha = None
        eps_used = eps0
    else:
        f = torch.tensor(case["factors"])
        eps, alpha = eps0 * f, alpha0 * f
        eps_used = eps

    batch = aggregator.perturb(model, x, y, eps, alpha, generator(seed))
    ok = assert_adversarial_batch(aggregator, x, y, batch.x, batch.y, eps_used)
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
            assert bool(feasible_inputs(p, x, batch.per_player[i], eps_used[i]).all())
        assert batch.player_loss is not None and batch.player_loss.shape == (k,)
        assert bool(torch.isfinite(batch.player_loss).all())
        if isinstance(aggregator, mr.Max):  # each example is one of the players' own
            same = (batch.per_player == batch.x).flatten(2).all(2)
            assert bool(same.any(0).all())
    assert bool(torch.isfinite(aggregator.loss(model, batch)))
    again = aggregator.perturb(model, x, y, eps, alpha, generator(seed))
    assert torch.equal(again.x, batch.x) and torch.equal(again.gamma, gamma)


# ---------------------------------------------------------------------------------------------
# Budget policies through Trainer.step
# ---------------------------------------------------------------------------------------------


@st.composite
def trainer_cases(draw: st.DrawFn) -> dict:
    shape = draw(image_shapes(b_min=2))
    game = draw(games(math.prod(shape[1:])))
    policy = draw(st.sampled_from(["bare", "fixed", "adaptive"]))
    lo, hi = draw(st.floats(0.1, 1.0)), draw(st.floats(1.0, 10.0))
    dtype = draw(st.sampled_from(DTYPES))
    return {
        "shape": shape,
        "dtype": dtype,
        "game": game,
        "policy": policy,
        "track_domination": draw(st.booleans()),
        "norm": draw(st.sampled_from(["l1", "l2"])),
        "clamp": draw(st.sampled_from([None, (0.5, 2.0), (lo, hi), (0.95, 1.05)])),
        "timing": draw(st.sampled_from(["same-batch", "lagged"])),
        "scale_steps": draw(st.booleans()),
        "probe_steps": draw(st.integers(1, 2)),
        "amp": dtype == torch.float32 and draw(st.booleans()),
        "batchnorm": draw(st.booleans()),
        "classes": draw(st.integers(2, 4)),
        "seed": draw(SEEDS),
    }


def build_game(case: dict):
    aggregator = build_aggregator(case["game"])
    if case["policy"] == "bare":
        return aggregator
    if case["policy"] == "fixed":
        return mr.fixed(
            aggregator,
            track_domination=case["track_domination"],
            norm=case["norm"],
            probe_steps=case["probe_steps"],
        )
    return mr.adaptive(
        aggregator,
        norm=case["norm"],
        clamp=case["clamp"],
        timing=case["timing"],
        scale_steps=case["scale_steps"],
        probe_steps=case["probe_steps"],
    )


def expected_factors(
    norms: dict[str, float] | None, names: tuple[str, ...], clamp: tuple[float, float] | None
) -> torch.Tensor:
    """AdaptiveBudget's factors (docs/concepts.md), computed here in float64: each norm over the
    median (of an even count: the mean of the middle two), clamped; 1 without norms, or for a
    zero median or a non-finite norm (the fallback)."""
    if norms is None:
        return torch.ones(len(names))
    values = [norms[name] for name in names]
    median = statistics.median(values)
    if not all(math.isfinite(v) for v in values) or median <= 0:
        return torch.ones(len(names))
    factors = [v / median for v in values]
    if clamp is not None:
        factors = [min(max(f, clamp[0]), clamp[1]) for f in factors]
    return torch.tensor(factors, dtype=torch.float32)


@settings(max_examples=examples(25), deadline=None)
@given(trainer_cases())
def test_trainer_steps_keep_budgets_and_batches_sound(case: dict) -> None:
    shape, dtype, classes, seed = case["shape"], case["dtype"], case["classes"], case["seed"]
    game = build_game(case)
    aggregator = game if case["policy"] == "bare" else game.aggregator
    names = aggregator.names
    n = math.prod(shape[1:])
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(n, 6)]
    if case["batchnorm"]:
        layers.append(nn.BatchNorm1d(6))
    model = nn.Sequential(*layers, nn.ReLU(), nn.Linear(6, classes)).to(dtype)
    trained: list[torch.Tensor] = []  # the inputs of the last forward pass in train mode

    def spy(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        if module.training:
            trained[:] = [inputs[0].detach()]

    model.register_forward_pre_hook(spy)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trainer = mr.Trainer(model, optimizer, game, amp=case["amp"], seed=seed)
    eps0, alpha0 = aggregator.base_budgets()
    adaptive = case["policy"] == "adaptive"
    tracked = adaptive or (case["policy"] == "fixed" and case["track_domination"])

    lagged_norms = None
    for step in range(2):
        x = random_x(shape, dtype, seed + step, 0.3)
        y = labels(shape[0], classes, seed + step)
        record = trainer.step(x, y)
        assert math.isfinite(record["loss"]) and not record["skipped"]
        eps = torch.tensor([record["eps"][name] for name in names])
        alpha = torch.tensor([record["alpha"][name] for name in names])
        assert list(record["eps"]) == list(names)
        assert bool(torch.isfinite(eps).all() and (eps > 0).all()), record["eps"]
        assert bool(torch.isfinite(alpha).all() and (alpha > 0).all()), record["alpha"]
        factor = eps / eps0
        if not adaptive:
            assert torch.equal(eps, eps0) and torch.equal(alpha, alpha0)
        else:
            if case["clamp"] is not None:
                lo, hi = case["clamp"]
                inside = (factor >= lo * (1 - 1e-6)) & (factor <= hi * (1 + 1e-6))
                assert bool(inside.all()), (factor, case["clamp"])
            # Same batch: the rule on this step's norms; lagged: on the previous step's.
            source = record["grad_norm"] if case["timing"] == "same-batch" else lagged_norms
            want = expected_factors(source, names, case["clamp"])
            torch.testing.assert_close(factor, want, rtol=1e-5, atol=0)
            lagged_norms = record["grad_norm"]
            if case["scale_steps"]:
                torch.testing.assert_close(alpha / alpha0, factor, rtol=1e-6, atol=0)
            else:
                assert torch.equal(alpha, alpha0)
        gamma = torch.tensor([record["gamma"][name] for name in names])
        assert bool(((gamma >= 0) & (gamma <= 1)).all())
        assert isinstance(record["fallbacks"], int) and record["fallbacks"] >= 0
        if tracked:
            assert record["dominant"] in names
            assert all(math.isfinite(v) and v >= 0 for v in record["grad_norm"].values())
        else:
            assert record["dominant"] is None and record["grad_norm"] is None
        # The batch the model trained on, at the budgets the record reports.
        adv_y = y.repeat(len(names)) if isinstance(aggregator, mr.Avg) else y
        assert_adversarial_batch(aggregator, x, y, trained[0], adv_y, eps)
    state = trainer.budgets
    assert bool(torch.isfinite(state.eps).all() and (state.eps > 0).all())
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@settings(max_examples=examples(20), deadline=None)
@given(
    norms=st.lists(
        st.sampled_from([0.0, 1e-30, 1e-3, 1.0, 1e3, 1e10]), min_size=3, max_size=3
    ).filter(lambda v: sorted(v)[1] > 0),  # a zero median is the documented fallback
    seed=SEEDS,
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
    state = game.update(game.init(), measured(torch.tensor(norms)))
    # Each player's step from delta = 0 with a zero input gradient (a saturated or dead model),
    # projected at the new budget, as in the attacks at those budgets.
    x = random_x((3, 1, 2, 2), torch.float32, seed, 0.3)
    zero = torch.zeros_like(x)
    for i, p in enumerate(players):
        stepped = p.ascend(x, zero, zero, state.alpha[i], p.draw(x, generator(seed)))
        delta = p.project(x, stepped, state.eps[i])
        assert bool(torch.isfinite(delta).all()), (p.name, state.eps)
    assert bool(torch.isfinite(state.eps).all() and (state.eps > 0).all()), state.eps


# ---------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------


@st.composite
def evaluate_cases(draw: st.DrawFn) -> dict:
    shape = draw(image_shapes())
    n = math.prod(shape[1:])
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True))
    b = shape[0]
    return {
        "shape": shape,
        "dtype": draw(st.sampled_from(DTYPES)),
        "kinds": kinds,
        # Budgets below the box's diameter: evaluate rejects the others (a test below).
        "players": [draw(player_settings(k, n, high=0.9)) for k in kinds],
        "suite": draw(st.sampled_from(["pgd", "pgd-strong"])),
        "restarts": draw(st.integers(0, 1)),
        "steps": draw(st.one_of(st.none(), st.integers(1, 3), st.just("per-threat"))),
        "n": draw(st.one_of(st.none(), st.integers(1, b))),
        "batch_size": draw(st.integers(1, b)),
        "loader": draw(st.one_of(st.none(), st.integers(1, b))),
        "checks": draw(st.booleans()),
        "classes": draw(st.integers(2, 4)),
        "hidden": draw(st.sampled_from([0, 8])),
        "seed": draw(SEEDS),
    }


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=examples(25), deadline=None)
@given(evaluate_cases())
def test_evaluate_reports_shares_with_robust_at_most_clean(case: dict) -> None:
    shape, dtype, classes, seed = case["shape"], case["dtype"], case["classes"], case["seed"]
    threats = [
        make_player(k, p, name=k) for k, p in zip(case["kinds"], case["players"], strict=True)
    ]
    model = tiny_model(math.prod(shape[1:]), classes, dtype, seed, case["hidden"])
    x, y = random_x(shape, dtype, seed, 0.3), labels(shape[0], classes, seed)
    data = (x, y) if case["loader"] is None else DataLoader(TensorDataset(x, y), case["loader"])
    steps = case["steps"]
    if steps == "per-threat":
        steps = {t.name: 1 + i % 2 for i, t in enumerate(threats)}
    report = mr.evaluate(
        model,
        data,
        threats,
        case["suite"],
        restarts=case["restarts"],
        steps=steps,
        n=case["n"],
        batch_size=case["batch_size"],
        seed=seed,
        progress=False,
        checks=case["checks"],
    )
    count = case["n"] or shape[0]
    assert report.n == count and torch.equal(report.labels, y[:count])
    assert report.threats == tuple(t.name for t in threats)
    with torch.no_grad():
        correct = model(x[:count]).argmax(1) == y[:count]
    assert torch.equal(report.correct_clean, correct)
    accuracy = report.accuracy
    assert list(accuracy) == ["clean", *report.threats, "All"]
    assert all(0 <= v <= 1 for v in accuracy.values()), accuracy
    assert accuracy["clean"] == int(correct.sum()) / count
    for name in report.threats:
        assert accuracy[name] <= accuracy["clean"]
        assert accuracy["All"] <= accuracy[name]


# ---------------------------------------------------------------------------------------------
# Bad values: only our own TypeError / ValueError, naming the argument
# ---------------------------------------------------------------------------------------------


def assert_rejected(
    call: Callable[[], object], name: str, ours: str | None = None, accepted: bool = False
) -> None:
    """``call()`` raises TypeError or ValueError naming the argument ``name``.

    Our own checks must name the argument (``ours``: a regex; by default ``name`` as a word). The
    type checker of the test run may answer first (a TypeCheckError, which is a TypeError): it
    must name the parameter, and then the call is made again without it, where our own check
    must answer (or, with ``accepted``, our code may accept the value as documented). Any other
    exception (an AttributeError, a RuntimeError from inside torch) fails the test.
    """
    pattern = ours if ours is not None else rf"(?<![\w.]){re.escape(name)}\b"
    with pytest.raises((TypeError, ValueError)) as info:
        call()
    if not isinstance(info.value, TypeCheckError):
        assert_ours(info.value, pattern)
        return
    assert f"parameter '{name}'" in str(info.value), str(info.value)
    with untyped():
        try:
            call()
        except (TypeError, ValueError) as e:
            assert_ours(e, pattern)
        else:
            assert accepted, f"{name}: accepted without the type checker"


def assert_ours(error: Exception, pattern: str) -> None:
    """Raised by multirobust's own code (not deep inside torch), with a message matching."""
    assert not isinstance(error, TypeCheckError)
    tb = error.__traceback__
    assert tb is not None
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename
    assert f"{os.sep}multirobust{os.sep}" in where, (where, error)
    assert re.search(pattern, str(error)), str(error)


BAD_NUMBERS = st.one_of(
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf]),
    st.floats(max_value=0.0, allow_nan=False),
)
NOT_NUMBERS = st.sampled_from(["0.1", [0.1], (0.1,), {"eps": 0.1}, 1j, True, False])


@settings(max_examples=examples(40), deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    field=st.sampled_from(["eps", "alpha"]),
    value=st.one_of(BAD_NUMBERS, NOT_NUMBERS, st.none()),
)
def test_players_reject_bad_budgets(kind: str, field: str, value: object) -> None:
    base = {"linf": mr.linf, "l2": mr.l2}.get(kind, mr.l1(alpha=0.5))
    assert_rejected(lambda: base(**{field: value}), field, rf"\b{base.name}\.{field}\b")


@settings(max_examples=examples(40), deadline=None)
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
    assert_rejected(lambda: player(**{field: value}), field, ours)


@st.composite
def bad_call_budgets(draw: st.DrawFn) -> dict:
    """A bad budget for an attack on a batch of 4: a number, a tensor with a bad entry, a tensor
    of the wrong shape, or not a number at all; or an integer tensor, which only the type
    checker rejects (our own check converts it to ``x``'s dtype, as documented)."""
    form = draw(st.sampled_from(["number", "entry", "shape", "int-tensor", "not-a-number"]))
    if form == "number":
        value: object = draw(BAD_NUMBERS)
    elif form == "entry":
        entries = draw(st.lists(st.floats(1e-3, 1.0), min_size=4, max_size=4))
        entries[draw(st.integers(0, 3))] = draw(BAD_NUMBERS)
        value = torch.tensor(entries, dtype=draw(st.sampled_from(DTYPES)))
    elif form == "shape":
        shape = draw(st.sampled_from([(3,), (5,), (4, 1), (1, 4), (2, 2), (1, 1)]))
        value = torch.full(shape, 0.1)
    elif form == "int-tensor":
        value = torch.ones(draw(st.sampled_from([(), (4,)])), dtype=torch.long)
    else:
        value = draw(NOT_NUMBERS)
    field = draw(st.sampled_from(["eps", "alpha"]))
    return {"field": field, "value": value, "accepted": form == "int-tensor"}


@settings(max_examples=examples(40), deadline=None)
@given(case=bad_call_budgets(), kind=st.sampled_from(KINDS), seed=SEEDS)
def test_attacks_reject_bad_call_time_budgets(case: dict, kind: str, seed: int) -> None:
    settings_ = {"eps": 0.5, "alpha": 0.1, "steps": 1, "restarts": 0}
    player = make_player(kind, {**settings_, "k_min": 1, "k_max": 2, "gap": None})
    model = tiny_model(16, 3, torch.float32, seed)
    x, y = random_x((4, 1, 4, 4), torch.float32, seed, 0.3), labels(4, 3, seed)
    field, value = case["field"], case["value"]
    attack = mr.pgd(player)
    assert_rejected(lambda: attack(model, x, y, **{field: value}), field, None, case["accepted"])


FLAWS = (
    "x-nan",
    "x-inf",
    "x-outside",
    "x-integer",
    "x-1d",
    "x-empty",
    "x-not-tensor",
    "y-out-of-range",
    "y-float",
    "y-2d",
    "y-length",
    "y-not-tensor",
)


def flawed_batch(flaw: str, draw: st.DrawFn) -> tuple[object, object]:
    """A batch of 4 inputs ``[4, 1, 4, 4]`` for a 3-class model, with exactly one ``flaw``."""
    g = generator(draw(SEEDS))
    x = torch.rand((4, 1, 4, 4), generator=g)
    y = torch.randint(0, 3, (4,), generator=g)
    where = (draw(st.integers(0, 3)), 0, draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    if flaw == "x-nan":
        x[where] = math.nan
    elif flaw == "x-inf":
        x[where] = draw(st.sampled_from([math.inf, -math.inf]))
    elif flaw == "x-outside":
        x[where] = draw(st.one_of(st.floats(-1e6, -1e-6), st.floats(1 + 1e-6, 1e6)))
    elif flaw == "x-integer":
        x = (x * 255).to(draw(st.sampled_from([torch.uint8, torch.int32, torch.int64])))
    elif flaw == "x-1d":
        x = x[:, 0, 0, 0]
    elif flaw == "x-empty":
        x, y = x[:0], y[:0]
    elif flaw == "x-not-tensor":
        x = x.numpy() if draw(st.booleans()) else x.tolist()
    elif flaw == "y-out-of-range":
        y[draw(st.integers(0, 3))] = draw(st.one_of(st.integers(-100, -1), st.integers(3, 100)))
    elif flaw == "y-float":
        y = y.to(draw(st.sampled_from([torch.float32, torch.float64, torch.bool])))
    elif flaw == "y-2d":
        y = y[:, None]
    elif flaw == "y-length":
        y = y[: draw(st.integers(1, 3))] if draw(st.booleans()) else torch.cat([y, y[:1]])
    else:
        y = y.numpy() if draw(st.booleans()) else y.tolist()
    return x, y


PLAYERS = (
    mr.linf(eps=0.1, alpha=0.05, steps=1),
    mr.l1(eps=1.0, alpha=0.5, steps=1, k_min=2, k_max=4),
)


def bad_batch_call(api: str, x: object, y: object) -> tuple[Callable[[], object], nn.Module]:
    model = tiny_model(16, 3, torch.float32, 0)
    if api == "pgd":
        return lambda: mr.pgd(PLAYERS[1])(model, x, y, seed=0), model
    if api == "trainer":
        trainer = mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mr.max_(*PLAYERS))
        return lambda: trainer.step(x, y), model
    return lambda: mr.evaluate(model, (x, y), PLAYERS, restarts=0, progress=False), model


def expected_name(api: str, flaw: str) -> tuple[str, str | None]:
    """The argument a rejection must name, and the regex of our own message when not the name."""
    if flaw == "y-length":  # the two arguments disagree: both named
        return "y", (r"\bdata\b.*\bx\b.*\by\b" if api == "eval" else r"\bx and y\b")
    if api == "eval" and flaw in ("x-not-tensor", "y-not-tensor"):
        return "data", r"\bdata must be\b"  # evaluate takes the pair as `data`
    if api == "eval" and flaw == "x-empty":
        return "data", r"\bdata is empty\b"
    return flaw.split("-")[0], None


@st.composite
def bad_batches(draw: st.DrawFn) -> dict:
    api = draw(st.sampled_from(["pgd", "trainer", "eval"]))
    flaw = draw(st.sampled_from(FLAWS))
    x, y = flawed_batch(flaw, draw)
    return {"api": api, "flaw": flaw, "x": x, "y": y}


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=examples(60), deadline=None)
@given(bad_batches())
def test_bad_batches_are_rejected_naming_the_argument(case: dict) -> None:
    call, model = bad_batch_call(case["api"], case["x"], case["y"])
    assert_rejected(call, *expected_name(case["api"], case["flaw"]))
    for p in model.parameters():  # rejected before any training step
        assert p.grad is None


@pytest.mark.parametrize("form", ["numpy", "list"])
@pytest.mark.parametrize("argument", ["x", "y"])
def test_trainer_rejects_batches_that_are_not_tensors(argument: str, form: str) -> None:
    x, y = random_x((4, 1, 4, 4), torch.float32, 0, 0.3), labels(4, 3, 0)
    batch = {"x": x, "y": y}
    batch[argument] = batch[argument].numpy() if form == "numpy" else batch[argument].tolist()
    call, _ = bad_batch_call("trainer", batch["x"], batch["y"])
    assert_rejected(call, argument)


SETTINGS = (
    "pgd.steps",
    "pgd.restarts",
    "pgd.keep",
    "msd.steps",
    "adaptive.clamp",
    "adaptive.norm",
    "adaptive.timing",
    "adaptive.probe_steps",
    "fixed.norm",
    "fixed.probe_steps",
    "evaluate.restarts",
    "evaluate.steps",
    "evaluate.batch_size",
    "evaluate.n",
    "evaluate.suite",
    "trainer.max_consecutive_skips",
)
# Valid values among those drawn below (None: "the player's own" for PGD, "all" for n).
VALID = {("pgd", "steps", None), ("pgd", "restarts", None), ("pgd", "restarts", 0)}
VALID |= {("evaluate", "steps", None), ("evaluate", "n", None), ("evaluate", "restarts", 0)}
BAD_CLAMPS = st.one_of(
    st.tuples(st.floats(-1.0, 0.0), st.floats(1.0, 4.0)),  # lo <= 0
    st.tuples(st.floats(1.01, 4.0), st.floats(1.01, 4.0)),  # lo > 1
    st.tuples(st.floats(0.1, 1.0), st.floats(0.0, 0.99)),  # hi < 1
    st.tuples(st.floats(0.1, 1.0), st.just(math.inf)),
    st.sampled_from([(math.nan, 2.0), (0.5, math.nan), (0.5,), (0.5, 2.0, 3.0), "0.5, 2", 2.0]),
)


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=examples(50), deadline=None)
@given(
    target=st.sampled_from(SETTINGS),
    value=st.one_of(st.integers(-10, 0), st.sampled_from([1.5, "2", None, math.nan, True])),
    word=st.sampled_from(["fgsm", "", "L2", None, 2]),
    clamp=BAD_CLAMPS,
)
def test_bad_settings_are_rejected_naming_the_argument(
    target: str, value: object, word: object, clamp: object
) -> None:
    api, field = target.split(".")
    if field in ("keep", "norm", "timing", "suite"):
        value = word
    elif field == "clamp":
        value = clamp
    if (api, field, value) in VALID and not isinstance(value, bool):
        return
    player = mr.linf(eps=0.1, alpha=0.05, steps=1)
    model = tiny_model(16, 3, torch.float32, 0)
    x, y = random_x((4, 1, 4, 4), torch.float32, 0, 0.3), labels(4, 3, 0)
    kwargs = {field: value}
    if api == "pgd":
        call = lambda: mr.pgd(player, **kwargs)  # noqa: E731
    elif api == "msd":
        call = lambda: mr.msd(player, **kwargs)  # noqa: E731
    elif api in ("adaptive", "fixed"):
        policy = mr.adaptive if api == "adaptive" else mr.fixed
        call = lambda: policy(mr.max_(player), **kwargs)  # noqa: E731
    elif api == "evaluate":
        call = lambda: mr.evaluate(model, (x, y), [player], progress=False, **kwargs)  # noqa: E731
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        call = lambda: mr.Trainer(model, opt, mr.max_(player), **kwargs)  # noqa: E731
    assert_rejected(call, field)
