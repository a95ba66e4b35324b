"""Host synchronisations: none inside an attack's iterations, and a fixed few per training step.

On a GPU, every read of a tensor's value by Python (``bool(t)``, ``t.item()``, ``t.tolist()``,
``float(t)``), every op whose output size depends on values (``nonzero``, a boolean mask,
``unique``, ``bincount``) and every blocking copy to or from the device waits for all the queued
work, and the GPU then idles until Python launches more. This CPU test counts the first two
kinds with a ``TorchFunctionMode``, so a sync added to an iteration is caught without a GPU. It
does not see copies (the test of ``base_budgets`` checks that they do not block) nor reads
inside a Python-level torch function (the mode is off while one runs). On a GPU,
``torch.cuda.set_sync_debug_mode("warn")`` reports them all.
"""

import collections

import pytest
import torch
from torch.overrides import TorchFunctionMode

import multirobust as mr
from test_training import L1, L2, LINF, data, tiny_model, trainer

READS = frozenset(
    {
        *("__bool__", "__float__", "__int__", "__index__", "__contains__", "is_nonzero"),
        *("item", "tolist", "cpu", "numpy", "__array__", "__format__", "__repr__"),
        *("equal", "allclose", "nonzero", "masked_select", "unique", "unique_consecutive"),
        *("bincount", "repeat_interleave"),
    }
)


def measured(norms: torch.Tensor) -> mr.Measurements:
    """Measurements with these gradient norms (and zero losses)."""
    return mr.Measurements(torch.zeros_like(norms), norms)


class HostSyncs(TorchFunctionMode):
    """Counts, by name, the calls that make a GPU wait for the host."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            self.calls[name] += 1
        elif name == "__getitem__" and getattr(args[1], "dtype", None) == torch.bool:
            self.calls["boolean mask"] += 1
        elif name == "where" and len(args) + len(kwargs or {}) == 1:
            self.calls["where"] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@pytest.fixture(autouse=True)
def no_debug_mode(monkeypatch) -> None:
    """Debug mode checks every attack step, which reads values: the counts assume it is off."""
    monkeypatch.delenv("MULTIROBUST_DEBUG", raising=False)


def test_the_counter_sees_each_kind_of_sync() -> None:
    t = torch.tensor([1.0, 2.0, 2.0])
    with HostSyncs() as syncs:
        u = t * 2 + 1  # device work only
        reads = [
            bool(u.sum() > 0), u[0].item(), u.tolist(), float(u[0]), int(u[0]), u.nonzero(),
            torch.equal(u, t), torch.allclose(u, t), u[u > 3], torch.where(u > 3), u.unique(),
            torch.bincount(u.long()), f"{u[0]:.1f}",
        ]  # fmt: skip
    assert len(syncs.calls) == len(reads)  # each read counted once
    assert set(syncs.calls) == {
        *("__bool__", "item", "tolist", "__float__", "__int__", "nonzero", "equal"),
        *("allclose", "boolean mask", "where", "unique", "bincount", "__format__"),
    }


def players(steps: int) -> tuple[mr.Player, ...]:
    return tuple(p(steps=steps) for p in (LINF, L2, L1))


def aggregator(kind: str, steps: int) -> mr.Max | mr.Avg | mr.Msd:
    ps = players(steps)
    return mr.msd(*ps, steps=steps) if kind == "msd" else getattr(mr, kind)(*ps)


def attack_syncs(kind: str, steps: int) -> collections.Counter[str]:
    agg = aggregator(kind, steps)
    eps, alpha = agg.base_budgets()
    x, y = data(8).tensors
    with HostSyncs() as syncs:
        agg.perturb(tiny_model(), x, y, eps, alpha, torch.Generator().manual_seed(1))
    return syncs.calls


@pytest.mark.parametrize("kind", ["msd", "max_", "avg"])
def test_attacks_never_sync_inside_their_iterations(kind: str) -> None:
    short, long = attack_syncs(kind, 2), attack_syncs(kind, 6)
    assert short == long, "a sync inside the iterations: the count grows with the steps"
    if kind == "msd":  # the best-so-far is tracked on the device
        assert short == {}
    else:  # one check per player's PGD run, whether its best loss is finite (rescoring if not)
        assert short == {"__bool__": 3}


GAMES = {
    "msd": lambda s: mr.fixed(aggregator("msd", s)),
    "msd+ab lagged": lambda s: mr.adaptive(aggregator("msd", s), timing="lagged", probe_steps=2),
    "max+ab same-batch": lambda s: mr.adaptive(aggregator("max_", s)),
    "avg+ab lagged": lambda s: mr.adaptive(aggregator("avg", s), timing="lagged"),
}


def step_syncs(game: mr.Fixed | mr.Adaptive) -> collections.Counter[str]:
    t, (x, y) = trainer(game), data(8).tensors
    t.step(x, y)  # warm-up: the first step also checks the model
    with HostSyncs() as syncs:
        t.step(x, y)
    return syncs.calls


@pytest.mark.parametrize("name", list(GAMES))
def test_a_training_step_syncs_a_fixed_number_of_times(name: str) -> None:
    assert step_syncs(GAMES[name](2)) == step_syncs(GAMES[name](5))


@pytest.mark.parametrize(("name", "expected"), [("msd", 0), ("msd+ab lagged", 4)])
def test_syncs_before_the_skip_decision(name: str, expected: int) -> None:
    # MSD+AB lagged: one finite-loss check per probe (3 players) and one read by the budget rule
    # (7 before the rule read its checks at once). MSD's 0 guards its attack against new reads;
    # the blocking copies it made before are invisible here (see the base_budgets test).
    # validate="first": the default checks every batch's values (5 reads before the attack).
    t, (x, y) = trainer(GAMES[name](3), validate="first"), data(8).tensors
    t.step(x, y)
    update, before = t._update, []

    def counted(loss: torch.Tensor) -> bool:
        before.append(syncs.total)
        return update(loss)

    t._update = counted
    with HostSyncs() as syncs:
        t.step(x, y)
    assert before == [expected]


def test_the_adaptive_update_syncs_once() -> None:
    policy = mr.adaptive(aggregator("msd", 2))
    state = policy.init()
    with HostSyncs() as syncs:
        policy.update(state, measured(torch.tensor([1.0, 2.0, 8.0])))
    assert syncs.calls == {"tolist": 1}


@pytest.mark.parametrize(("device", "non_blocking"), [("cuda", True), ("cpu", False)])
def test_base_budgets_copy_to_cuda_without_blocking(monkeypatch, device, non_blocking) -> None:
    # Not blocking on CUDA only: elsewhere (MPS) a non-blocking copy of a temporary is unsafe.
    copies = []
    monkeypatch.setattr(
        torch.Tensor, "to", lambda t, *a, **kw: copies.append((a, kw)) or t, raising=True
    )
    aggregator("msd", 2).base_budgets(torch.device(device))
    assert copies == [((torch.device(device),), {"non_blocking": non_blocking})] * 2


def test_perturb_builds_no_base_budgets_when_given_both(monkeypatch) -> None:
    agg = aggregator("msd", 2)
    eps, alpha = agg.base_budgets()
    calls = []
    monkeypatch.setattr(
        type(agg), "base_budgets", lambda self, device=None: calls.append(device) or (eps, alpha)
    )
    x, y = data(8).tensors
    agg.perturb(tiny_model(), x, y, eps, alpha)
    assert calls == []
    agg.perturb(tiny_model(), x, y, eps)  # alpha missing: the players' own
    assert len(calls) == 1
