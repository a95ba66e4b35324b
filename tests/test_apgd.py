"""APGD over the Player protocol: the schedule, closed-form optima on linear models, feasibility,
the losses and their class checks, user players (generic and with their own sparse step), no host
sync inside the iterations, and strength against our PGD and pyautoattack on a digits CNN."""

import dataclasses
import math
import pathlib
import runpy
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import multirobust as mr
from multirobust.apgd import APGD, SparseStepPlayer, apgd, checkpoints, sparse_checkpoints
from multirobust.apgd.losses import dlr, targeted_dlr
from multirobust.models import DigitsCNN
from multirobust.players import AdditivePlayer, per_example
from test_host_syncs import HostSyncs

DTYPES = (torch.float32, torch.float64)


def assert_feasible(player: mr.Player, x: torch.Tensor, x_adv: torch.Tensor, eps) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert bool(((x_adv >= 0) & (x_adv <= 1)).all())
    eps_t = torch.as_tensor(eps, dtype=x.dtype).expand(x.shape[0])
    rtol = 1e-5 if x.dtype == torch.float32 else 1e-11
    slack = eps_t * rtol + x[0].numel() * torch.finfo(x.dtype).eps
    assert bool((player.size(x_adv - x) <= eps_t + slack).all()), player.size(x_adv - x) / eps_t


# ---------------------------------------------------------------------------------------------
# The schedule
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 37, 100, 1000])
def test_checkpoints_follow_the_papers_recursion(steps: int) -> None:
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # ceil(p_j * steps), rounding away float noise first; the last iteration's is dropped
    expected = sorted({max(1, math.ceil(round(q * steps, 6))) for q in p[1:]})
    assert checkpoints(steps) == tuple(w for w in expected if w < steps)
    assert checkpoints(100) == (22, 41, 57, 70, 80, 87, 93, 99)
    assert sparse_checkpoints(100) == tuple(range(4, 100, 4))


# ---------------------------------------------------------------------------------------------
# Closed form: linear models
# ---------------------------------------------------------------------------------------------

N = 32


def linear_margin_model(v: torch.Tensor) -> nn.Module:
    """Logits (v.x, -v.x): the margin of class 0 is 2 v.x, and CE is monotone in it."""
    model = nn.Linear(v.numel(), 2, bias=False).to(v.dtype)
    with torch.no_grad():
        model.weight.copy_(torch.stack([v, -v]))
    return nn.Sequential(nn.Flatten(), model)


CLOSED_FORM = {
    # name: (player, eps, the worst case of a linear model per unit eps, box not binding)
    "linf": (mr.linf, 0.03, lambda v: v.abs().sum()),
    "l2": (mr.l2, 0.25, lambda v: v.norm()),
    "l1": (mr.l1, 0.3, lambda v: v.abs().max()),
    "l1-ball-box": (mr.l1(projection="ball-box"), 0.3, lambda v: v.abs().max()),
    "l1_eval": (mr.l1_eval, 0.3, lambda v: v.abs().max()),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("start", ["zero", "random"])
@pytest.mark.parametrize("name", list(CLOSED_FORM))
def test_reaches_the_worst_case_of_a_linear_model(name: str, start: str, dtype) -> None:
    player, eps0, dual = CLOSED_FORM[name]
    v = torch.randn(N, generator=torch.Generator().manual_seed(7), dtype=dtype)
    model = linear_margin_model(v)
    x = torch.full((3, 1, 4, 8), 0.5, dtype=dtype)  # the box does not bind
    y = torch.tensor([0, 1, 0])
    eps = eps0 * torch.tensor([1.0, 0.5, 0.75], dtype=dtype)
    attack = apgd(player, steps=20, keep="max-loss", start=start)
    x_adv = attack(model, x, y, eps=eps, seed=0)
    assert_feasible(player, x, x_adv, eps)
    towards = torch.where(y == 0, 1.0, -1.0).to(dtype)
    decrease = towards * ((x - x_adv).flatten(1) @ v)
    worst = eps * dual(v)
    assert bool((decrease >= 0.99 * worst).all()), decrease / worst
    assert bool((decrease <= worst * (1 + 1e-5)).all()), decrease / worst


def greedy_l1_box(v: torch.Tensor, x: torch.Tensor, eps: float) -> float:
    """The l_1 ∩ box optimum of a linear loss: fill the largest |v_i| up to the box, in order."""
    cap = torch.where(v > 0, x.flatten(), 1 - x.flatten())
    left, value = eps, 0.0
    for i in v.abs().argsort(descending=True).tolist():
        mass = min(left, float(cap[i]))
        value, left = value + mass * float(v[i].abs()), left - mass
    return value


@pytest.mark.parametrize("player", [mr.l1, mr.l1_eval], ids=["l1", "l1_eval"])
def test_l1_reaches_the_box_bound_optimum_of_a_linear_model(player: mr.Player) -> None:
    g = torch.Generator().manual_seed(3)
    v = torch.randn(N, generator=g, dtype=torch.float64)
    model = linear_margin_model(v)
    near_edges = torch.where(v > 0, 0.05, 0.95).reshape(1, 4, 8)  # each coordinate holds 0.05
    x = torch.stack([near_edges, torch.rand(1, 4, 8, generator=g, dtype=torch.float64)])
    y = torch.tensor([0, 0])
    attack = apgd(player(eps=1.0), steps=50, keep="max-loss", start="random")
    x_adv = attack(model, x, y, seed=0)
    assert_feasible(player, x, x_adv, 1.0)
    decrease = (x - x_adv).flatten(1) @ v
    for i in range(2):
        best = greedy_l1_box(v, x[i], 1.0)
        # 98.1% on example 1 (99.3% before the sparsity rounded down); from a zero start
        # example 0 stops at 53%: APGD-L1's k follows a support its own steps keep small
        # (pyautoattack's APGD-L1 stops at 52% after 20 steps there).
        assert 0.98 * best <= float(decrease[i]) <= best * (1 + 1e-9), float(decrease[i]) / best


def linear_classes(classes: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(classes, N, generator=g, dtype=torch.float64)
    b = torch.randn(classes, generator=g, dtype=torch.float64)
    lin = nn.Linear(N, classes).to(torch.float64)
    with torch.no_grad():
        lin.weight.copy_(w)
        lin.bias.copy_(b)
    return nn.Sequential(nn.Flatten(), lin), w, b


@pytest.mark.parametrize("loss", ["dlr", "dlr-targeted", "ce"])
def test_dlr_breaks_exactly_what_the_closed_form_says(loss: str) -> None:
    """A 4-class linear model in the l_inf ball: example i is breakable iff some class j has
    ``(w_y - w_j).x + b_y - b_j < eps ||w_y - w_j||_1``. The budgets put the robust margin of
    each example at +-30% of its clean margin."""
    model, w, b = linear_classes(4)
    g = torch.Generator().manual_seed(1)
    x = 0.5 + 0.05 * torch.rand(16, 1, 4, 8, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    margins = (w[y] @ x.flatten(1).T).diagonal()[:, None] + b[y][:, None] - (x.flatten(1) @ w.T + b)
    dual = (w[y][:, None, :] - w[None]).abs().sum(dim=2)
    other = torch.arange(4)[None] != y[:, None]
    # the budget that just breaks each example: min over j of margin_j / dual_j
    eps_star = torch.where(other, margins / dual.clamp_min(1e-12), torch.inf).amin(dim=1)
    breakable = torch.arange(16) % 2 == 0
    eps = torch.where(breakable, 1.3, 0.7) * eps_star
    assert float(eps.max()) < 0.45  # the box never binds around x in [0.5, 0.55]
    result = apgd(mr.linf, steps=50, loss=loss).run(model, x, y, eps=eps, seed=0)
    assert torch.equal(result.success, breakable)


def test_dlr_losses_are_invariant_to_shifts_and_scales_of_the_logits() -> None:
    z = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    ref = torch.stack([y, (y + 1) % 5], dim=1)
    for f, r in ((dlr, y), (targeted_dlr, ref)):
        torch.testing.assert_close(f.attack_loss(3 * z + 2, r), f.attack_loss(z, r))
    wrong = z.argmax(dim=1) != y
    assert torch.equal(dlr.attack_loss(z, y) > 0, wrong)


# ---------------------------------------------------------------------------------------------
# Feasibility
# ---------------------------------------------------------------------------------------------


def mlp(classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, classes))


PLAYERS = {
    "linf": (mr.linf(eps=0.1), "auto"),
    "l2": (mr.l2(eps=0.5), "auto"),
    "l1": (mr.l1(eps=2.0, k_min=2, k_max=5), "auto"),
    "l1-generic": (mr.l1(eps=2.0, k_min=2, k_max=5), "generic"),
    "l1_eval": (mr.l1_eval(eps=2.0), "auto"),
}


@settings(max_examples=12)
@given(
    name=st.sampled_from(list(PLAYERS)),
    scale=st.floats(0.05, 3.0),
    steps=st.integers(1, 8),
    restarts=st.integers(0, 1),
    keep=st.sampled_from(["first-success", "max-loss"]),
    loss=st.sampled_from(["ce", "dlr", "dlr-targeted"]),
    seed=st.integers(0, 2**16),
)
def test_every_returned_point_is_in_the_ball_and_the_box(
    name: str, scale: float, steps: int, restarts: int, keep: str, loss: str, seed: int
) -> None:
    player, step = PLAYERS[name]
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 1, 4, 4, generator=g)
    x = torch.where(x < 0.15, 0.0, torch.where(x > 0.85, 1.0, x))  # pixels on the box's faces
    y = torch.randint(0, 5, (6,), generator=g)
    eps = player.eps * scale * torch.linspace(0.3, 1.0, 6)
    attack = apgd(player, steps=steps, restarts=restarts, loss=loss, keep=keep, step=step)
    result = attack.run(mlp(), x, y, eps=eps, seed=seed)
    assert_feasible(player, x, result.delta, eps)
    with torch.no_grad():
        wrong = mlp()(result.delta).argmax(dim=1) != y
    assert torch.equal(result.success, wrong)  # success is that of the returned input


# ---------------------------------------------------------------------------------------------
# Arguments, classes and the model
# ---------------------------------------------------------------------------------------------


def test_losses_refuse_models_with_too_few_classes() -> None:
    x, y = torch.rand(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="at least 3 classes, got 2 classes; use loss='ce'"):
        apgd(mr.linf, steps=2, loss="dlr")(mlp(2), x, y)
    with pytest.raises(ValueError, match="at least 4 classes, got 3 classes; use loss='ce' or"):
        apgd(mr.linf, steps=2, loss="dlr-targeted")(mlp(3), x, y)
    with pytest.raises(ValueError, match="targets=5 is more than the 4 classes"):
        apgd(mr.linf, steps=2, loss="dlr-targeted", targets=5)(mlp(5), x, y)
    with pytest.raises(ValueError, match="targets is for loss='dlr-targeted'"):
        apgd(mr.linf, targets=3)
    with pytest.raises(ValueError, match="loss must be one of"):
        apgd(mr.linf, loss="hinge")
    with pytest.raises(ValueError, match="rho must be a number in"):
        apgd(mr.linf, rho=1.5)
    with pytest.raises(ValueError, match="start must be one of"):
        apgd(mr.linf, start="middle")
    with pytest.raises(TypeError, match="step='sparse' needs a player with a sparse step"):
        apgd(mr.linf, step="sparse")


def test_model_left_as_found_and_seeds_repeat() -> None:
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Dropout(0.5), nn.Linear(8, 5)).train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    attack = apgd(mr.l2(eps=0.5), steps=5, restarts=1, start="random")
    a, b = attack(net, x, y, seed=3), attack(net, x, y, seed=3)
    assert torch.equal(a, b)
    assert not torch.equal(a, attack(net, x, y, seed=4))
    assert net.training and all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())
    assert isinstance(attack, APGD) and hash(attack) == hash(
        apgd(mr.l2(eps=0.5), 5, 1, start="random")
    )


# ---------------------------------------------------------------------------------------------
# User players
# ---------------------------------------------------------------------------------------------


class Brightness:
    """A user player written against the protocol alone: one brightness shift per example."""

    name, eps, alpha, steps, restarts = "brightness", 0.1, 0.01, 10, 0

    def check_input(self, x):
        pass

    def zero(self, x):
        return torch.zeros(x.shape[0], dtype=x.dtype)

    def init(self, x, eps, generator):
        u = torch.rand(x.shape[0], generator=generator, dtype=x.dtype)
        return (2 * u - 1) * torch.as_tensor(eps, dtype=x.dtype)

    def draw(self, x, generator):
        return None

    def ascend(self, x, delta, grad, alpha, noise):
        return delta + torch.as_tensor(alpha, dtype=x.dtype) * grad.sign()

    def project(self, x, delta, eps):
        e = torch.as_tensor(eps, dtype=x.dtype)
        return torch.minimum(torch.maximum(delta, -e), e)

    def size(self, delta):
        return delta.abs()

    def apply(self, x, delta):
        return x + per_example(delta, x)


def test_a_protocol_only_player_gets_apgd_and_its_optimum() -> None:
    v = torch.randn(N, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    model = linear_margin_model(v)
    x = torch.full((2, 1, 4, 8), 0.5, dtype=torch.float64)
    y = torch.tensor([0, 1])
    x_adv = apgd(Brightness(), steps=10, keep="max-loss")(model, x, y, eps=0.2)
    shift = (x_adv - x).flatten(1)
    towards = torch.where(y == 0, 1.0, -1.0).to(torch.float64)
    torch.testing.assert_close(-towards * (shift @ v), 0.2 * v.sum().abs().expand(2))


def sparse_player(calls: list[int]) -> SparseStepPlayer:
    """An additive l_1 player whose sparse step moves the single largest coordinate."""

    @dataclasses.dataclass(frozen=True)
    class OneCoordinate(AdditivePlayer):
        eps: float = 0.3
        alpha: float = 0.1
        steps: int = 10
        restarts: int = 0
        name: str = "one"

        def init(self, x, eps, generator=None):
            return torch.zeros_like(x)

        def ascend(self, x, delta, grad, alpha, noise=None):
            raise AssertionError("apgd must take the declared sparse step")

        def project(self, x, delta, eps):
            return mr.l1.project(x, delta, eps)

        def size(self, delta):
            return delta.flatten(1).abs().sum(dim=1)

        def sparse_step(self, x, delta, grad, step_size, k, eps):
            calls.append(int(k.max()))
            top = grad.flatten(1).abs().argmax(dim=1)
            e = torch.zeros_like(grad.flatten(1)).scatter(1, top[:, None], 1.0)
            e = e * grad.flatten(1).sign()
            return self.project(x, delta + per_example(step_size, x) * e.view_as(x), eps)

    return OneCoordinate()


def test_a_player_declares_its_own_sparse_step() -> None:
    calls: list[int] = []
    player = sparse_player(calls)
    assert isinstance(player, SparseStepPlayer)
    v = torch.randn(N, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = torch.full((1, 1, 4, 8), 0.5, dtype=torch.float64)
    x_adv = apgd(player, steps=10)(linear_margin_model(v), x, torch.tensor([0]))
    assert len(calls) == 10 and calls[0] == math.ceil(0.2 * N)  # APGD-L1's first sparsity
    torch.testing.assert_close((x - x_adv).flatten(1) @ v, 0.3 * v.abs().max().reshape(1))


def test_a_bad_sparse_step_is_refused_when_the_attack_is_built() -> None:
    class NotAMethod(Brightness):
        sparse_step = 3

    class WrongArguments(Brightness):
        def sparse_step(self, x, delta):
            return delta

    with pytest.raises(TypeError, match="has a sparse_step that is not a method"):
        apgd(NotAMethod())
    with pytest.raises(TypeError, match=r"sparse_step must take \(x, delta, grad, step_size, k"):
        apgd(WrongArguments())


# ---------------------------------------------------------------------------------------------
# Host syncs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["linf", "l1"])
def test_no_host_sync_inside_the_iterations(name: str, monkeypatch) -> None:
    monkeypatch.delenv("MULTIROBUST_DEBUG", raising=False)
    player = PLAYERS[name][0]
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 5, (6,))
    counts = []
    for steps in (5, 30):
        attack = apgd(player, steps=steps, restarts=1, keep="max-loss")
        with HostSyncs() as syncs:
            attack.run(mlp(), x, y, seed=0)
        counts.append(syncs.calls)
    assert counts[0] == counts[1], "a sync inside the iterations: the count grows with the steps"


# ---------------------------------------------------------------------------------------------
# Strength on a digits CNN
# ---------------------------------------------------------------------------------------------

DIGITS = {
    "linf": (mr.linf(eps=0.1), "Linf"),
    "l2": (mr.l2(eps=0.75), "L2"),
    "l1": (mr.l1(eps=2.0), "L1"),
}


SUBSET = 200  # test images of the default (fast) strength tests; the slow ones take all 450


@pytest.fixture(scope="module")
def digits_cnn() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A clean-trained small digits CNN (about 97% test accuracy) and the test set."""
    train, test = mr.data.digits(seed=0)
    torch.manual_seed(0)
    model = DigitsCNN(width=8)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    xt, yt = train.tensors
    for _ in range(10):
        for idx in torch.randperm(len(yt)).split(64):
            loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval().requires_grad_(False)
    x, y = test.tensors
    with torch.no_grad():
        assert float((model(x).argmax(dim=1) == y).float().mean()) > 0.95
    return model, x, y


def accuracy(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100 * float((model(x_adv).argmax(dim=1) == y).float().mean())


@pytest.mark.parametrize("name", list(DIGITS))
def test_never_weaker_than_pgd_with_the_same_iterations(name: str, digits_cnn) -> None:
    model, x, y = digits_cnn
    x, y = x[:SUBSET], y[:SUBSET]
    player = DIGITS[name][0]
    ours = accuracy(model, apgd(player, steps=25)(model, x, y, seed=0), y)
    theirs = accuracy(model, mr.pgd(player, steps=25, keep="first-success")(model, x, y, seed=0), y)
    assert ours <= theirs, (ours, theirs)


def pyautoattack_accuracy(model, x, y, norm: str, eps: float, steps: int, runs: int) -> float:
    from pyautoattack.autopgd_base import APGDAttack

    state = torch.random.get_rng_state()  # APGD reseeds torch's global generator
    try:
        attack = APGDAttack(model, n_iter=steps, norm=norm, n_restarts=runs, eps=eps, seed=0)
        return accuracy(model, attack.perturb(x, y), y)
    finally:
        torch.random.set_rng_state(state)


def strength(
    name: str, digits_cnn, steps: int, restarts: int, n: int | None = None
) -> tuple[float, float]:
    model, x, y = digits_cnn
    x, y = x[:n], y[:n]
    player, norm = DIGITS[name]
    ours = accuracy(model, apgd(player, steps=steps, restarts=restarts)(model, x, y, seed=0), y)
    theirs = pyautoattack_accuracy(model, x, y, norm, player.eps, steps, restarts + 1)
    return ours, theirs


@pytest.mark.parametrize("name", list(DIGITS))
def test_as_strong_as_pyautoattacks_apgd(name: str, digits_cnn) -> None:
    """Robust accuracy within 0.5 point of pyautoattack's APGD-CE / APGD-L1 (no larger-eps
    schedule) at equal iterations and runs (pyautoattack's ``n_restarts`` is ours + 1)."""
    ours, theirs = strength(name, digits_cnn, steps=25, restarts=0, n=SUBSET)
    assert ours <= theirs + 0.5, (ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DIGITS))
def test_as_strong_as_pyautoattacks_apgd_at_100_steps_and_a_restart(name: str, digits_cnn) -> None:
    ours, theirs = strength(name, digits_cnn, steps=100, restarts=1)
    assert ours <= theirs + 0.5, (ours, theirs)


# ---------------------------------------------------------------------------------------------
# benchmarks/eval_time.py
# ---------------------------------------------------------------------------------------------

BENCHMARKS = pathlib.Path(__file__).parents[1] / "benchmarks"


def run_eval_time(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(sys, "argv", ["eval_time.py", *args])
    with torch.random.fork_rng():
        runpy.run_path(str(BENCHMARKS / "eval_time.py"), run_name="__main__")


def test_eval_time_prints_the_machine_and_the_ratio(monkeypatch, capsys) -> None:
    threads = torch.get_num_threads()
    try:
        run_eval_time(monkeypatch, "--norms", "linf,l1", "--batch", "4", "--steps", "2",
                      "--repeats", "1")  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "CPU capability" in out and "native bf16" in out and "threads" in out
    assert out.count("ratio ours/pyautoattack") == 2


@pytest.mark.parametrize(
    ("flags", "message"),
    [(("--steps", "0"), "--steps must be >= 1"), (("--norms", "l3"), "unknown 'l3'")],
)
def test_eval_time_refuses_bad_flags_before_timing(flags, message, monkeypatch, capsys) -> None:
    with pytest.raises(SystemExit):
        run_eval_time(monkeypatch, *flags)
    assert message in capsys.readouterr().err
