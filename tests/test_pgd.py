"""PGD with one player (spec §2): output, seeds, the model left as found, keep rules, restarts,
and closed-form optimality on a linear model."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import multirobust as mr

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
