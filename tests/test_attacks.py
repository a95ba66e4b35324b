"""Attacks (multirobust.attacks): PGD with one player (output, seeds, the model left as found,
keep rules, restarts, closed-form optimality on a linear model), ``frozen_model``, random PGD runs
(hypothesis), and the bad input every attack refuses by name before it starts: its settings,
call-time budgets, the batch (``check_batch``), the model's output, seeds, generators, devices."""

import copy
import math
import pickle
import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fuzzing as fz
import multirobust as mr
from bad_input import TYPECHECKED, Row, refuse, table
from multirobust import _checks
from multirobust.attacks import PGD, frozen_model
from test_aggregators import small_cnn

DTYPES = (torch.float32, torch.float64)
# Small budgets for inputs [b, 1, 4, 4] (16 coordinates, so k_max <= 16 for l1).
PLAYERS = {
    "linf": mr.linf(eps=0.1, alpha=0.02, steps=5),
    "l2": mr.l2(eps=0.5, alpha=0.1, steps=5),
    "l1": mr.l1(eps=2.0, alpha=0.5, steps=5, k_min=2, k_max=5),
    "l1-ball-box": mr.l1(eps=2.0, alpha=0.5, steps=5, k_min=2, k_max=5, projection="ball-box"),
}
IDS = list(PLAYERS)


def tol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 1e-11


def mlp(dtype: torch.dtype = torch.float32, seed: int = 0, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, classes))
    return net.to(dtype).eval()


def bn_dropout_net(dtype: torch.dtype = torch.float32) -> nn.Module:
    """Conv, BatchNorm with non-trivial running statistics, Dropout; left in train mode."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(64, 3),
    ).to(dtype)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(8, 1, 4, 4, dtype=dtype))
    return net


def batch(dtype: torch.dtype = torch.float32, b: int = 8, seed: int = 0):
    """x in [0, 1] with some coordinates exactly 0 and 1, labels in {0, 1, 2}."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((b, 1, 4, 4), generator=g, dtype=dtype)
    u = torch.rand(x.shape, generator=g, dtype=dtype)
    x = torch.where(u < 0.1, torch.zeros_like(x), torch.where(u > 0.9, torch.ones_like(x), x))
    y = torch.randint(0, 3, (b,), generator=g)
    return x, y


def assert_feasible(player: mr.Player, x: torch.Tensor, x_adv: torch.Tensor, eps) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool(((x_adv >= 0) & (x_adv <= 1)).all())
    eps_t = torch.as_tensor(eps, dtype=x.dtype).expand(x.shape[0])
    # x_adv - x re-rounds each coordinate once (absolute error <= 2**-24 in float32).
    slack = eps_t * tol(x.dtype) + x[0].numel() * torch.finfo(x.dtype).eps
    assert bool((player.size(x_adv - x) <= eps_t + slack).all())


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("per_example", [False, True])
def test_output_has_x_shape_and_dtype_and_is_feasible(
    name: str, dtype: torch.dtype, per_example: bool
) -> None:
    player = PLAYERS[name]
    x, y = batch(dtype)
    model = mlp(dtype)
    eps = player.eps * torch.linspace(0.25, 1.0, x.shape[0], dtype=dtype) if per_example else None
    alpha = (
        player.alpha * torch.linspace(0.5, 1.0, x.shape[0], dtype=dtype) if per_example else None
    )
    x0, y0 = x.clone(), y.clone()
    result = mr.pgd(player, restarts=1).run(model, x, y, eps=eps, alpha=alpha, seed=0)
    assert_feasible(player, x, result.delta, player.eps if eps is None else eps)
    assert torch.equal(x, x0) and torch.equal(y, y0)  # inputs not modified in place
    assert result.loss.shape == (x.shape[0],) and result.success.shape == (x.shape[0],)
    assert result.success.dtype == torch.bool
    x_adv = mr.pgd(player, restarts=1)(model, x, y, eps=eps, alpha=alpha, seed=0)
    assert torch.equal(x_adv, result.delta)
    # The reported loss and success are those of the returned input.
    with torch.no_grad():
        logits = model(x_adv)
    torch.testing.assert_close(result.loss, F.cross_entropy(logits.float(), y, reduction="none"))
    assert torch.equal(result.success, logits.argmax(1) != y)


def test_attack_actually_increases_the_loss() -> None:
    x, y = batch(torch.float64, b=16)
    model = mlp(torch.float64)
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
    for player in PLAYERS.values():
        loss = mr.pgd(player).run(model, x, y, seed=0).loss
        assert bool((loss >= clean - 1e-6).all())
        assert float(loss.mean()) > float(clean.mean()) + 1e-3


# ---------------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_same_seed_same_result_different_seed_different(name: str) -> None:
    # Tiny steps and wide random starts: some restart beats the run from zero for some example.
    player = PLAYERS[name](alpha=PLAYERS[name].alpha / 20, steps=2, restarts=3)
    x, y = batch(b=16)
    model = bn_dropout_net()
    attack = mr.pgd(player)
    a = attack(model, x, y, seed=0)
    assert torch.equal(a, attack(model, x, y, seed=0))
    assert torch.equal(a, attack(model, x, y, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(a, attack(model, x, y, seed=1))


def test_seed_none_follows_torch_manual_seed() -> None:
    attack = mr.pgd(PLAYERS["l2"](alpha=0.005, steps=2, restarts=3))
    x, y = batch(b=16)
    model = mlp()
    torch.manual_seed(123)
    a = attack(model, x, y)
    torch.manual_seed(123)
    assert torch.equal(a, attack(model, x, y))


# ---------------------------------------------------------------------------------------------
# The model is left exactly as found
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("keep", ["max-loss", "first-success"])
def test_model_is_left_exactly_as_found(name: str, dtype: torch.dtype, keep: str) -> None:
    model = bn_dropout_net(dtype)
    model[2].eval()  # mixed flags must come back exactly, not as one model.train()
    flags = [m.training for m in model.modules()]
    state = copy.deepcopy(model.state_dict())
    x, y = batch(dtype)
    mr.pgd(PLAYERS[name], restarts=1, keep=keep)(model, x, y, seed=0)
    assert [m.training for m in model.modules()] == flags
    after = model.state_dict()
    assert after.keys() == state.keys()
    for key, value in state.items():
        assert after[key].dtype == value.dtype
        assert torch.equal(after[key], value), key  # weights, running stats, num_batches_tracked
    assert all(p.grad is None for p in model.parameters())


def test_existing_parameter_gradients_are_untouched() -> None:
    model = bn_dropout_net()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    x, y = batch()
    mr.pgd(PLAYERS["linf"])(model, x, y, seed=0)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())


@pytest.mark.parametrize("name", IDS)
def test_each_examples_attack_is_independent_of_the_batch(name: str) -> None:
    """Run 0 is deterministic: attacking one example alone gives the same as in a batch."""
    x, y = batch(torch.float64, b=4)
    model = bn_dropout_net(torch.float64)
    attack = mr.pgd(PLAYERS[name], restarts=0)
    together = attack(model, x, y, seed=0)
    for i in range(x.shape[0]):
        alone = attack(model, x[i : i + 1], y[i : i + 1], seed=0)
        torch.testing.assert_close(alone[0], together[i], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# keep= and restarts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_first_success_finds_whatever_max_loss_found(name: str, seed: int) -> None:
    """With the same seed both rules walk the same iterates (first-success only stops early
    once every example is broken), and max-loss returns one of them; so where max-loss's input
    is misclassified, some iterate was, and first-success returns a misclassified input."""
    x, y = batch(b=32, seed=seed)
    model = mlp(seed=seed)
    player = PLAYERS[name](restarts=2)
    best = mr.pgd(player, keep="max-loss").run(model, x, y, seed=seed)
    first = mr.pgd(player, keep="first-success").run(model, x, y, seed=seed)
    assert bool(best.success.any()) and not bool(best.success.all())  # a non-vacuous check
    assert bool((first.success | ~best.success).all())
    # The first iterate is delta = 0: an example the model already gets wrong is returned as is.
    with torch.no_grad():
        clean_wrong = model(x).argmax(1) != y
    assert bool(clean_wrong.any())
    assert torch.equal(first.delta[clean_wrong], x[clean_wrong])
    assert not torch.equal(best.delta[clean_wrong], x[clean_wrong])
    assert_feasible(player, x, first.delta, player.eps)
    with torch.no_grad():
        wrong = model(first.delta).argmax(1) != y
    assert torch.equal(wrong, first.success)


@pytest.mark.parametrize("name", IDS)
def test_restarts_never_lower_the_loss(name: str) -> None:
    """Run 0 starts at zero and does not depend on the restarts that follow it."""
    x, y = batch(b=16)
    model = mlp()
    player = PLAYERS[name]
    base = mr.pgd(player, restarts=0).run(model, x, y, seed=3).loss
    for restarts in (1, 3):
        more = mr.pgd(player, restarts=restarts).run(model, x, y, seed=3).loss
        assert bool((more >= base - 1e-6).all())


def test_steps_and_restarts_default_to_the_players() -> None:
    x, y = batch()
    model = mlp()
    player = PLAYERS["l2"](alpha=0.01)
    a = mr.pgd(player(steps=3, restarts=2))(model, x, y, seed=0)
    b = mr.pgd(player(steps=40, restarts=0), steps=3, restarts=2)(model, x, y, seed=0)
    assert torch.equal(a, b)
    assert not torch.equal(a, mr.pgd(player(steps=3, restarts=0))(model, x, y, seed=0))


def test_attack_is_a_frozen_picklable_value() -> None:
    attack = mr.pgd(mr.linf, steps=3, restarts=1, keep="first-success")
    assert pickle.loads(pickle.dumps(attack)) == attack
    assert attack == mr.pgd(mr.linf(eps=0.03), 3, 1, "first-success")
    assert hash(attack) == hash(mr.pgd(mr.linf, 3, 1, "first-success"))
    with pytest.raises(AttributeError):
        attack.steps = 4  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# Closed form: a linear two-class model
# ---------------------------------------------------------------------------------------------

N = 32  # >= 20 coordinates, for l1's default k range [5, 20]


def linear_margin_model(v: torch.Tensor) -> nn.Module:
    """Logits (v.x, -v.x): the margin of class 0 is 2 v.x, and CE is monotone in it."""
    model = nn.Linear(v.numel(), 2, bias=False).to(v.dtype)
    with torch.no_grad():
        model.weight.copy_(torch.stack([v, -v]))
    return nn.Sequential(nn.Flatten(), model)


def top_mean(v: torch.Tensor, k: int) -> torch.Tensor:
    return v.abs().sort(descending=True).values[:k].mean()


def linf_norm(v: torch.Tensor) -> torch.Tensor:
    return v.abs().amax()


CLOSED_FORM = {
    # name: (player, eps, what PGD must reach per unit eps, the analytic worst case per unit eps)
    "linf": (mr.linf, 0.03, lambda v: v.abs().sum(), lambda v: v.abs().sum()),
    "l2": (mr.l2, 0.25, lambda v: v.norm(), lambda v: v.norm()),
    "l1-k1": (mr.l1(k_min=1, k_max=1, alpha=0.01), 0.3, linf_norm, linf_norm),
    "l1-ball-box-k1": (
        mr.l1(k_min=1, k_max=1, alpha=0.01, projection="ball-box"),
        0.3,
        linf_norm,
        linf_norm,
    ),
    # The default k in [5, 20]: every step moves the 5 largest equally, so PGD spreads eps over
    # them and no further (the other coordinates get less mass per step and are projected away).
    "l1-default-k": (mr.l1(alpha=0.01), 0.3, lambda v: top_mean(v, 5), linf_norm),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CLOSED_FORM))
def test_reaches_the_analytic_worst_case_of_a_linear_model(name: str, dtype: torch.dtype) -> None:
    player, eps0, target, dual = CLOSED_FORM[name]
    v = torch.randn(N, generator=torch.Generator().manual_seed(7), dtype=dtype)
    model = linear_margin_model(v)
    # x = 0.5 so the box does not bind; labels 0 and 1 push in opposite directions;
    # per-example budgets and step sizes.
    x = torch.full((3, 1, 4, 8), 0.5, dtype=dtype)
    y = torch.tensor([0, 1, 0])
    eps = eps0 * torch.tensor([1.0, 0.5, 0.75], dtype=dtype)
    if name == "l1-default-k":
        steps, alpha = 60, eps / 5
    else:
        steps, alpha = 15, eps / 10
    x_adv = mr.pgd(player, steps=steps)(model, x, y, eps=eps, alpha=alpha, seed=0)
    assert_feasible(player, x, x_adv, eps)
    towards = torch.where(y == 0, 1.0, -1.0).to(dtype)  # the margin of the true class
    decrease = towards * ((x - x_adv).flatten(1) @ v)
    assert bool((decrease >= 0.98 * eps * target(v)).all()), decrease / (eps * target(v))
    worst = eps * dual(v)
    assert bool((decrease <= worst * (1 + 1e-5)).all()), decrease / worst  # nothing beats it


def test_out_of_memory_in_the_clean_forward_is_not_reported_as_bad_input() -> None:
    class Hungry(torch.nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    x, y = torch.rand(2, 1, 2, 2), torch.tensor([0, 1])
    with pytest.raises(torch.OutOfMemoryError):  # callers' batch-size searches catch this
        mr.pgd(mr.linf(eps=0.1, alpha=0.05), steps=1)(Hungry(), x, y)


def test_model_mode_restored_by_frozen_model_on_error():
    model = small_cnn(batchnorm=True).train()
    with pytest.raises(RuntimeError), frozen_model(model):
        raise RuntimeError("boom")
    assert all(m.training for m in model.modules())


# ---------------------------------------------------------------------------------------------
# Random runs (hypothesis)
# ---------------------------------------------------------------------------------------------


@st.composite
def pgd_cases(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(fz.KINDS))
    shape = draw(fz.image_shapes())
    n = math.prod(shape[1:])
    dtype = draw(st.sampled_from(fz.DTYPES))
    unit = fz.diameter(kind, n)
    override = draw(st.sampled_from(["none", "eps", "both"]))
    return {
        "kind": kind,
        "shape": shape,
        "dtype": dtype,
        "settings": draw(fz.player_settings(kind, n)),
        "steps": draw(st.one_of(st.none(), st.integers(1, 3))),
        "restarts": draw(st.one_of(st.none(), st.integers(0, 2))),
        "keep": draw(st.sampled_from(["max-loss", "first-success"])),
        "eps": fz.budget(draw, shape[0], 1e-3 * unit, unit, dtype) if override != "none" else None,
        "alpha": fz.budget(draw, shape[0], 1e-3 * unit, unit, dtype)
        if override == "both"
        else None,
        "classes": draw(st.integers(2, 4)),
        "hidden": draw(st.sampled_from([0, 8])),
        "edges": draw(st.sampled_from([0.0, 0.3])),
        "seed": draw(fz.SEEDS),
    }


@settings(max_examples=fz.examples(40), deadline=None)
@given(pgd_cases())
def test_pgd_is_finite_feasible_and_repeatable(case: dict) -> None:
    shape, dtype, classes, seed = case["shape"], case["dtype"], case["classes"], case["seed"]
    player = fz.make_player(case["kind"], case["settings"])
    model = fz.tiny_model(math.prod(shape[1:]), classes, dtype, seed, case["hidden"])
    x, y = fz.random_x(shape, dtype, seed, case["edges"]), fz.labels(shape[0], classes, seed)
    attack = mr.pgd(player, case["steps"], case["restarts"], case["keep"])
    budgets = {"eps": case["eps"], "alpha": case["alpha"]}

    result = attack.run(model, x, y, **budgets, seed=seed)
    x_adv = result.delta
    assert x_adv.shape == shape and x_adv.dtype == dtype
    fz.assert_in_box(x_adv)
    eps = player.eps if case["eps"] is None else case["eps"]
    assert bool(fz.feasible_inputs(player, x, x_adv, eps).all())
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
    again = attack(model, x, y, **budgets, generator=fz.generator(seed))
    assert torch.equal(again, x_adv)


# ---------------------------------------------------------------------------------------------
# Aggregators
# ---------------------------------------------------------------------------------------------


@st.composite
def bad_call_budgets(draw: st.DrawFn) -> dict:
    """A bad budget for an attack on a batch of 4: a number, a tensor with a bad entry, a tensor
    of the wrong shape, or not a number at all; or an integer tensor, which only the type
    checker rejects (our own check converts it to ``x``'s dtype, as documented)."""
    form = draw(st.sampled_from(["number", "entry", "shape", "int-tensor", "not-a-number"]))
    if form == "number":
        value: object = draw(fz.BAD_NUMBERS)
    elif form == "entry":
        entries = draw(st.lists(st.floats(1e-3, 1.0), min_size=4, max_size=4))
        entries[draw(st.integers(0, 3))] = draw(fz.BAD_NUMBERS)
        value = torch.tensor(entries, dtype=draw(st.sampled_from(fz.DTYPES)))
    elif form == "shape":
        shape = draw(st.sampled_from([(3,), (5,), (4, 1), (1, 4), (2, 2), (1, 1)]))
        value = torch.full(shape, 0.1)
    elif form == "int-tensor":
        value = torch.ones(draw(st.sampled_from([(), (4,)])), dtype=torch.long)
    else:
        value = draw(fz.NOT_NUMBERS)
    field = draw(st.sampled_from(["eps", "alpha"]))
    return {"field": field, "value": value, "accepted": form == "int-tensor"}


@settings(max_examples=fz.examples(40), deadline=None)
@given(case=bad_call_budgets(), kind=st.sampled_from(fz.KINDS), seed=fz.SEEDS)
def test_attacks_reject_bad_call_time_budgets(case: dict, kind: str, seed: int) -> None:
    settings_ = {"eps": 0.5, "alpha": 0.1, "steps": 1, "restarts": 0}
    player = fz.make_player(kind, {**settings_, "k_min": 1, "k_max": 2, "gap": None})
    model = fz.tiny_model(16, 3, torch.float32, seed)
    x, y = fz.random_x((4, 1, 4, 4), torch.float32, seed, 0.3), fz.labels(4, 3, seed)
    field, value = case["field"], case["value"]
    attack = mr.pgd(player)
    fz.assert_rejected(lambda: attack(model, x, y, **{field: value}), field, None, case["accepted"])


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=fz.examples(20), deadline=None)
@given(fz.bad_batches("pgd"))
def test_pgd_rejects_bad_batches_naming_the_argument(case: dict) -> None:
    fz.check_bad_batch(case)


@settings(max_examples=fz.examples(10), deadline=None)
@given(
    target=st.sampled_from([s for s in fz.SETTINGS if s.startswith("pgd.")]),
    value=st.one_of(st.integers(-10, 0), st.sampled_from([1.5, "2", None, math.nan, True])),
    word=st.sampled_from(["fgsm", "", "L2", None, 2]),
)
def test_bad_pgd_settings_are_rejected_naming_the_argument(
    target: str, value: object, word: object
) -> None:
    fz.check_bad_setting(target, value, word, None)


# ---------------------------------------------------------------------------------------------
# Bad input: the attack's settings, call-time budgets, the batch, the model, seeds and devices
# ---------------------------------------------------------------------------------------------

LINF1 = mr.linf(eps=0.1, alpha=0.05, steps=1)
L2_1 = mr.l2(eps=0.5, alpha=0.25, steps=1)
ATTACK = mr.pgd(mr.linf(eps=0.1, alpha=0.05, steps=2))
CUDA = pytest.param("cuda", marks=pytest.mark.gpu)


def model16(device: str | None = None) -> nn.Module:
    """A 3-class linear model of inputs [b, 1, 4, 4]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3, device=device))


def batch4(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 1, 4, 4, generator=g), torch.arange(b) % 3


def attack(x: torch.Tensor | object, y: torch.Tensor | object, net: nn.Module | None = None, **kw):
    """``ATTACK`` on ``model16()`` (or ``net``)."""
    return ATTACK(model16() if net is None else net, x, y, **kw)


def with_x(change) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch4()`` with ``change(x)`` applied in place."""
    x, y = batch4()
    change(x)
    return x, y


def with_label(i: int, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch4()
    y[i] = label
    return x, y


def call_entry(entry: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Call one of the public entry points that take a batch."""
    if entry == "pgd":
        return mr.pgd(LINF1)(net, x, y)
    if entry in ("Trainer.step", "Trainer.fit"):
        trainer = mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.max_(LINF1))
        return trainer.step(x, y) if entry == "Trainer.step" else trainer.fit([(x, y)], epochs=1)
    if entry == "evaluate":
        return mr.evaluate(net, (x, y), [LINF1], restarts=0, checks=False)
    return mr.robustness_curve(net, (x, y), LINF1, [0.1], restarts=0, checks=False)


ENTRIES = ["pgd", "Trainer.step", "Trainer.fit", "evaluate", "robustness_curve"]


class Squeezed(nn.Module):
    """Returns logits of the wrong shape: ``[b]``, ``[b, C, 1]``, or one row for the batch."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x: torch.Tensor):
        z = self.net(x)
        if self.kind == "1d":
            return z[:, 0]
        if self.kind == "3d":
            return z[:, :, None]
        if self.kind == "one-row":
            return z.mean(0, keepdim=True)
        return (z,)


def unchecked_pgd(player: object) -> PGD:
    """A ``PGD`` built without the type checker's wrapper around its ``__init__``."""
    made = object.__new__(PGD)
    for field, value in (("player", player), ("steps", None), ("restarts", None)):
        object.__setattr__(made, field, value)
    object.__setattr__(made, "keep", "max-loss")
    return made


def labels_as(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch4()
    return x, (y > 0).to(dtype) if dtype == torch.bool else y.to(dtype)


def long_labels_message(dtype: torch.dtype) -> str:
    fix = (
        re.escape("; convert with y.long()")
        if dtype in (torch.int32, torch.int16, torch.uint8)
        else ""
    )
    return rf"y must hold integer class labels.*{dtype}{fix}$"


def typed(own: str, parameter: str) -> str:
    """The message of a row that the type checker answers first in the test run."""
    return f"parameter '{parameter}'" if TYPECHECKED else own


BAD_INPUT = [
    # The attack's settings
    Row(
        "pgd-steps-0",
        "value",
        lambda: mr.pgd(mr.linf, steps=0),
        ValueError,
        "steps must be an int >= 1",
    ),
    Row(
        "pgd-restarts--1",
        "value",
        lambda: mr.pgd(mr.linf, restarts=-1),
        ValueError,
        "restarts must be an int >= 0",
    ),
    Row(
        "pgd-unknown-keep",
        "value",
        lambda: mr.pgd(mr.linf, keep="best"),
        ValueError,
        "keep must be one of 'max-loss', 'first-success'",
    ),
    Row(
        "pgd-a-name-for-a-player",
        "type",
        lambda: mr.pgd("linf"),
        TypeError,
        typed("player must implement the Player protocol", "player"),
    ),
    Row(
        "pgd-a-name-for-a-player-own-check",
        "member",
        lambda: unchecked_pgd("linf").__post_init__(),
        TypeError,
        r"player must implement the Player protocol; str lacks name",
    ),
    # Seeds and generators
    Row(
        "seed-and-generator",
        "value",
        lambda: attack(*batch4(), seed=0, generator=torch.Generator()),
        ValueError,
        "either seed or generator",
    ),
    Row(
        "pgd-model-a-function",
        "type",
        lambda: mr.pgd(LINF1)(lambda t: t.flatten(1)[:, :3], *batch4()),
        TypeError,
        r"model must be a torch.nn.Module",
        untyped=True,
    ),
    Row(
        "pgd-seed-a-string",
        "type",
        lambda: mr.pgd(LINF1)(model16(), *batch4(), seed="0"),
        TypeError,
        "seed must be an int or None",
        untyped=True,
    ),
    Row(
        "pgd-generator-a-string",
        "type",
        lambda: mr.pgd(LINF1)(model16(), *batch4(), generator="g"),
        TypeError,
        r"generator must be a torch.Generator",
        untyped=True,
    ),
    Row(
        "check-seed-a-string",
        "type",
        lambda: _checks.seed("seed", "0"),
        TypeError,
        "seed must be an int or None, got str '0'",
    ),
    Row(
        "check-generator-a-string",
        "type",
        lambda: _checks.generator("g", batch4()[0]),
        TypeError,
        r"generator must be a torch.Generator or None, got str",
    ),
    Row(
        "check-generator-on-another-device",
        "device",
        lambda: _checks.generator(torch.Generator(), batch4()[0].to("meta")),
        ValueError,
        "generator is on cpu but x is on meta",
    ),
    Row(
        "pgd-generator-on-another-device",
        "device",
        lambda: mr.pgd(mr.l1(eps=2.0, alpha=0.5, steps=2, k_min=2, k_max=4))(
            model16().cuda(), *(t.cuda() for t in batch4()), generator=torch.Generator()
        ),
        ValueError,
        "generator is on cpu but x is on cuda",
        marks=(pytest.mark.gpu,),
    ),
    # Budgets passed when attacking
    *(
        row
        for field in ("eps", "alpha")
        for value in (0.0, -0.1, math.nan, math.inf)
        for row in (
            Row(
                f"call-{field}-{value}",
                "value",
                lambda f=field, v=value: attack(*batch4(), **{f: v}),
                ValueError,
                rf"{field} must be a finite number > 0",
            ),
            Row(
                f"call-{field}-{value}-per-example",
                "value",
                lambda f=field, v=value: attack(*batch4(), **{f: torch.tensor([0.1, v, 0.1, 0.1])}),
                ValueError,
                rf"{field} must be finite and > 0 for every example",
            ),
        )
    ),
    *(
        row
        for field in ("eps", "alpha")
        for shape in ((3,), (5,), (4, 1))
        for row in (
            Row(
                f"call-{field}-of-shape-{list(shape)}",
                "type" if TYPECHECKED else "value",
                lambda f=field, s=shape: attack(*batch4(), **{f: torch.full(s, 0.1)}),
                TypeError if TYPECHECKED else ValueError,
                typed(rf"{field} must be a number, a 0-d tensor", field),
            ),
            Row(
                f"check-{field}-of-shape-{list(shape)}",
                "value",
                lambda f=field, s=shape: _checks.budget_tensor(f, torch.full(s, 0.1), batch4()[0]),
                ValueError,
                rf"{field} must be .* shape \[batch\]=\[4\]",
            ),
        )
    ),
    # The batch
    *(
        Row(
            f"x-of-{d}",
            "type",
            lambda d=d: attack(batch4()[0].to(d), batch4()[1]),
            TypeError,
            "x must be floating point",
        )
        for d in (torch.uint8, torch.int64, torch.bool)
    ),
    *(
        Row(
            f"x-with-{v}",
            "data",
            lambda v=v: attack(*with_x(lambda x: x.__setitem__((1, 0, 2, 3), v))),
            ValueError,
            "x contains NaN or infinite values",
        )
        for v in (math.nan, math.inf)
    ),
    *(
        Row(
            f"x-with-{v}",
            "data",
            lambda v=v: attack(*with_x(lambda x: x.__setitem__((2, 0, 0, 0), v))),
            ValueError,
            r"x must lie in \[0, 1\]",
        )
        for v in (-1e-3, 1.001)
    ),
    Row(
        "x-and-y-of-other-lengths",
        "data",
        lambda: attack(batch4()[0], batch4()[1][:3]),
        ValueError,
        "x and y must have the same batch size",
    ),
    *(
        Row(
            f"label-{label}-of-3-classes",
            "data",
            lambda lb=label: attack(*with_label(1, lb)),
            ValueError,
            r"y must hold labels in \[0, 2\]",
        )
        for label in (3, 7, -1)
    ),
    *(
        Row(
            f"labels-of-{d}",
            "type",
            lambda d=d: attack(*labels_as(d)),
            TypeError,
            long_labels_message(d),
        )
        for d in (torch.float32, torch.float64, torch.bool, torch.int32, torch.int16, torch.uint8)
    ),
    *(
        Row(
            f"logits-{kind}",
            "data",
            lambda k=kind: attack(*batch4(), net=Squeezed(k)),
            ValueError,
            r"the model must return logits of shape \[b, classes\]",
        )
        for kind in ("1d", "3d", "one-row")
    ),
    Row(
        "model-returns-a-tuple",
        "type",
        lambda: attack(*batch4(), net=Squeezed("tuple")),
        TypeError,
        "the model must return a tensor of logits",
    ),
    *(
        Row(
            f"x-of-shape-{list(s)}",
            "data",
            lambda s=s: attack(torch.rand(s), torch.zeros(s[0], dtype=torch.long)),
            ValueError,
            r"x must be a non-empty batch \[b, \.\.\.\]",
        )
        for s in ((4,), (0, 16))
    ),
    Row(
        "x-an-array",
        "type",
        lambda: attack(batch4()[0].numpy(), batch4()[1]),
        TypeError,
        typed("x must be a torch.Tensor", "x"),
    ),
    Row(
        "y-a-list",
        "type",
        lambda: attack(batch4()[0], batch4()[1].tolist()),
        TypeError,
        typed("y must be a torch.Tensor", "y"),
    ),
    Row(
        "check-x-an-array",
        "type",
        lambda: _checks.inputs(batch4()[0].numpy(), batch4()[1]),
        TypeError,
        "x must be a torch.Tensor",
    ),
    Row(
        "check-y-a-list",
        "type",
        lambda: _checks.inputs(batch4()[0], batch4()[1].tolist()),
        TypeError,
        "y must be a torch.Tensor",
    ),
    Row(
        "y-2d",
        "type" if TYPECHECKED else "data",
        lambda: attack(batch4()[0], batch4()[1][:, None]),
        TypeError if TYPECHECKED else ValueError,
        typed(r"y must be a 1-d tensor of labels \[b\]", "y"),
    ),
    Row(
        "check-y-2d",
        "data",
        lambda: _checks.inputs(batch4()[0], batch4()[1][:, None]),
        ValueError,
        r"y must be a 1-d tensor of labels \[b\]",
    ),
    # The batch against the model, and devices
    *(
        Row(
            f"x-does-not-fit-the-model-{kind}-{entry}",
            "data",
            lambda e=entry, k=kind: call_entry(
                e,
                model16(),
                torch.rand(4, 2, 4, 4) if k == "rank" else batch4()[0].double(),
                batch4()[1],
            ),
            ValueError,
            r"x \(shape .*\) does not fit the model",
        )
        for entry in ("pgd", "Trainer.step", "evaluate")
        for kind in ("rank", "dtype")
    ),
    Row(
        "check-forward-rank",
        "data",
        lambda: _checks.forward(model16(), torch.rand(4, 2, 4, 4)),
        ValueError,
        r"x \(shape \[4, 2, 4, 4\].*\) does not fit the model, ",
    ),
    Row(
        "check-forward-dtype",
        "data",
        lambda: _checks.forward(model16(), batch4()[0].double()),
        ValueError,
        r"parameters are torch\.float32: convert x",
    ),
    Row(
        "check-forward-device",
        "device",
        lambda: _checks.forward(model16("meta"), batch4()[0]),
        ValueError,
        r"the model is on meta: move x and y there",
    ),
    *(
        Row(
            f"model-on-{d}-x-on-cpu",
            "device",
            lambda d=d: mr.pgd(LINF1)(model16(d), *batch4()),
            ValueError,
            f"the model is on {d}.*move x and y there",
            marks=(pytest.mark.gpu,) if d == "cuda" else (),
        )
        for d in ("meta", "cuda")
    ),
    *(
        Row(
            f"y-on-{d}-x-on-cpu",
            "device",
            lambda d=d: mr.pgd(LINF1)(model16(), batch4()[0], batch4()[1].to(d)),
            ValueError,
            f"y is on {d}.* but x is on cpu; move both",
            marks=(pytest.mark.gpu,) if d == "cuda" else (),
        )
        for d in ("meta", "cuda")
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)


def test_the_checks_accept_what_they_should() -> None:
    """The seed, generator and forward checks pass good values through."""
    x, _ = batch4()
    assert _checks.seed("seed", None) is None and _checks.generator(None, x) is None
    assert _checks.forward(model16(), x).shape == (4, 3)


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(
    "kind", ["nan", "inf", "outside-box", "label-range", "float-labels", "int32-labels"]
)
def test_every_entry_point_checks_the_batch_first(entry: str, kind: str) -> None:
    x, y = batch4()
    match = {
        "nan": "x contains NaN or infinite values",
        "inf": "x contains NaN or infinite values",
        "outside-box": r"x must lie in \[0, 1\].*move any normalisation inside the model",
        "label-range": r"y must hold labels in \[0, 2\] for a model with 3 classes",
        "float-labels": r"y must hold integer class labels \(torch\.long\)",
        "int32-labels": r"y must hold integer class labels.*torch\.int32; convert with y\.long",
    }[kind]
    if kind in ("nan", "inf"):
        x[1, 0, 2, 3] = math.nan if kind == "nan" else math.inf
    elif kind == "outside-box":
        x = x * 255
    elif kind == "label-range":
        y[2] = 3
    else:
        y = y.float() if kind == "float-labels" else y.int()
    net = model16()
    before = copy.deepcopy(net.state_dict())
    error = TypeError if kind.endswith("labels") else ValueError
    with pytest.raises(error, match=match):
        call_entry(entry, net, x, y)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # no update ran


@pytest.mark.gpu
def test_budget_tensors_and_batches_on_another_device_are_moved() -> None:
    x, y = batch4()
    net = model16()
    eps = torch.full((4,), 0.1, device="cuda")
    x_adv = mr.pgd(LINF1)(net, x, y, eps=eps, alpha=eps / 2, seed=0)
    assert x_adv.device.type == "cpu" and float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    eps = torch.full((4,), 0.1)
    x_adv = mr.pgd(LINF1)(net.cuda(), x.cuda(), y.cuda(), eps=eps, alpha=eps / 2, seed=0)
    assert x_adv.device.type == "cuda"
    agg = mr.max_(LINF1, L2_1)
    out = agg.perturb(net, x.cuda(), y.cuda(), eps=torch.tensor([0.1, 0.5]))
    assert out.x.device.type == "cuda"
    net = model16().cuda()
    trainer = mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.max_(LINF1))
    record = trainer.step(x, y)  # a CPU batch for a CUDA model: moved
    assert record["step"] == 1


def test_x_that_requires_grad_is_accepted_quietly() -> None:
    x, y = batch4()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x_adv = mr.pgd(LINF1)(model16(), x.requires_grad_(), y, seed=0)
    assert x_adv.shape == x.shape
