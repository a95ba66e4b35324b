"""Shared pieces of the property tests (hypothesis) that drive the public API with random
shapes, dtypes (float32, float64, bfloat16), budgets (numbers, 0-d and per-example tensors) and
seeds: strategies, tiny models, feasibility checks, and ``assert_rejected`` for random bad values
(our own TypeError or ValueError naming the argument, or the test run's type checker naming the
parameter). The tests themselves live beside the module they test (test_players.py,
test_attacks.py, test_aggregators.py, test_budgets.py, test_training.py,
test_evaluation_bad_input.py).

Sized for the default CI run on 2 CPU cores (``HYPOTHESIS_PROFILE=thorough`` scales the example
counts up tenfold).
"""

import math
import os
import re
from collections.abc import Callable

import pytest
import torch
from hypothesis import settings
from hypothesis import strategies as st
from jaxtyping import TypeCheckError
from torch import nn

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
def games(draw: st.DrawFn, n: int, high: float = 1.5) -> dict:
    """An aggregator's recipe: 1 to 3 distinct kinds of players with random settings (budgets up
    to ``high`` times the box's diameter)."""
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3, unique=True))
    return {
        "aggregator": draw(st.sampled_from(["max", "avg", "msd"])),
        "msd_steps": draw(st.integers(1, 3)),
        "kinds": kinds,
        "players": [draw(player_settings(k, n, high)) for k in kinds],
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
def bad_batches(draw: st.DrawFn, api: str) -> dict:
    """A batch with one of ``FLAWS`` for ``api`` ("pgd", "trainer" or "eval")."""
    flaw = draw(st.sampled_from(FLAWS))
    x, y = flawed_batch(flaw, draw)
    return {"api": api, "flaw": flaw, "x": x, "y": y}


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


def check_bad_batch(case: dict) -> None:
    """A ``bad_batches`` case is refused naming the argument, before any training step."""
    call, model = bad_batch_call(case["api"], case["x"], case["y"])
    assert_rejected(call, *expected_name(case["api"], case["flaw"]))
    for p in model.parameters():
        assert p.grad is None


def check_bad_setting(target: str, value: object, word: object, clamp: object) -> None:
    """A bad value of one of ``SETTINGS`` (``value``; ``word`` for a name, ``clamp`` for a clamp)
    is refused naming the setting; valid values among those drawn are skipped."""
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
