"""The guides' examples of a new aggregator (``docs/examples/random_player.py``, SAT) and a new
budget policy (``docs/examples/equal_losses.py``), on the library's public API alone: each trains
on digits with the Trainer, feeds the diagnostics, resumes bit for bit from a checkpoint, and runs
under a 2-rank gloo torchrun."""

import importlib.util
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import multirobust as mr
from multirobust.models import DigitsCNN

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
NAMES = ("random_player", "equal_losses")
STEPS = 4  # training steps of the uninterrupted run; the resumed one stops halfway


def _import(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ex():
    """Both example files, imported as modules (without writing __pycache__ into docs/)."""
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield {name: _import(name) for name in NAMES}
    finally:
        sys.dont_write_bytecode = dont_write
        for name in NAMES:
            sys.modules.pop(name, None)


def _players() -> tuple[mr.Player, ...]:
    """The digits players, with 2-step attacks (steps sized for 2 CPU cores)."""
    return (
        mr.linf(eps=0.1, alpha=0.05, steps=2),
        mr.l2(eps=0.75, alpha=0.4, steps=2),
        mr.l1(eps=3.0, alpha=0.75, steps=2, k_min=2, k_max=8),
    )


def _game(ex, name: str):
    if name == "random_player":  # fixed budgets; the per-player gradients give 'dominant'
        agg = ex[name].random_player(*_players())
        return mr.fixed(agg, track_domination=True, probe_steps=2)
    return ex[name].equal_losses(mr.max_(*_players()), power=1.0)


@pytest.fixture(scope="module")
def batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    pytest.importorskip("sklearn")
    from multirobust.data import digits

    x, y = digits(seed=0)[0].tensors
    return [(x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]) for i in range(STEPS)]


def _trainer(ex, name: str, model_seed: int = 0) -> mr.Trainer:
    torch.manual_seed(model_seed)
    model = DigitsCNN(width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return mr.Trainer(model, optimizer, _game(ex, name), seed=0, progress=False)


@pytest.fixture(scope="module", params=NAMES)
def run(request, ex, batches):
    """``(example name, trainer, history)`` of an uninterrupted run of ``STEPS`` steps."""
    trainer = _trainer(ex, request.param)
    history = mr.History(trainer.step(x, y) for x, y in batches)
    return request.param, trainer, history


# -- the protocols, without training ------------------------------------------------------


def test_random_player_draws_its_player_from_the_generator_it_is_given(ex) -> None:
    sat = ex["random_player"].random_player(*(p(steps=1) for p in _players()))
    assert isinstance(sat, mr.Aggregator)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)

    def draws(seed: int, n: int = 10) -> list[int]:
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n):
            batch = sat.perturb(model, x, y, generator=gen)
            assert batch.gamma.sum() == 1 and batch.per_player is None
            assert batch.x.shape == x.shape and torch.equal(batch.clean, x)
            out.append(int(batch.gamma.argmax()))
        return out

    first = draws(0)
    assert draws(0) == first  # reproducible from the generator alone
    assert set(first) == {0, 1, 2}  # every player gets drawn
    assert draws(1) != first

    # The batch is the drawn player's own attack, continuing the same generator.
    gen = torch.Generator().manual_seed(5)
    i = int(torch.randint(3, (), generator=torch.Generator().manual_seed(5)))
    batch = sat.perturb(model, x, y, generator=gen)
    replay = torch.Generator().manual_seed(5)
    torch.randint(3, (), generator=replay)
    eps, alpha = mr.base_budgets(sat.players)
    with mr.frozen_model(model), torch.no_grad():
        inputs, _ = mr.attack_each(
            model, sat.players[i : i + 1], x, y, eps[i : i + 1], alpha[i : i + 1], replay
        )
    assert torch.equal(batch.x, inputs[0])
    loss = sat.loss(model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss)


def test_random_player_refuses_what_is_not_a_player(ex) -> None:
    with pytest.raises(TypeError, match="lacks"):
        ex["random_player"].random_player(mr.linf, object())
    with pytest.raises(ValueError, match="distinct names"):
        ex["random_player"].random_player(mr.linf, mr.linf)


def test_equal_losses_update_follows_its_formula(ex) -> None:
    policy = ex["equal_losses"].equal_losses(mr.max_(*_players()), power=1.0)
    assert isinstance(policy, mr.BudgetPolicy)
    assert policy.measure == mr.Measure("before", gradients=False)
    state = policy.init()
    assert all(isinstance(t, torch.Tensor) for t in state) and torch.equal(
        state.factor, torch.ones(3)
    )
    eps0, alpha0 = mr.base_budgets(policy.aggregator.players)

    def factor(losses: list[float], power: float = 1.0) -> list[float]:
        p = ex["equal_losses"].equal_losses(policy.aggregator, power=power)
        new = p.update(state, mr.Measurements(torch.tensor(losses), None))
        torch.testing.assert_close(new.eps, eps0 * new.factor)
        torch.testing.assert_close(new.alpha, alpha0 * new.factor)
        return [round(v, 4) for v in new.factor.tolist()]

    assert factor([1.0, 2.0, 3.0]) == [2.0, 1.0, 0.6667]  # mean 2: above it shrinks, below grows
    assert factor([1.0, 2.0, 3.0], power=0.5) == [1.4142, 1.0, 0.8165]
    assert factor([0.1, 2.0, 6.0]) == [2.0, 1.35, 0.5]  # 27 and 0.45, clamped to [0.5, 2]
    assert factor([0.0, 0.0, 0.0]) == [1.0, 1.0, 1.0]  # 0 / 0: the base budgets
    assert factor([math.inf, 1.0, 1.0]) == [1.0, 1.0, 1.0]  # a loss not finite: base budgets
    assert factor([math.nan, 1.0, 1.0]) == [1.0, 1.0, 1.0]
    for bad in ({"power": 0.0}, {"power": math.inf}, {"clamp": (2.0, 3.0)}, {"clamp": (0.5,)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ex["equal_losses"].equal_losses(policy.aggregator, **bad)


@pytest.mark.parametrize("name", NAMES)
def test_the_guides_code_that_uses_the_example_runs(ex, name: str) -> None:
    page = {"random_player": "new-aggregator.md", "equal_losses": "new-policy.md"}[name]
    text = (ROOT / "docs" / "guide" / page).read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    blocks = [b for b in blocks if f"from {name} import" in b]
    assert blocks, f"{page} has no block importing {name}"
    for block in blocks:
        exec(compile(block, page, "exec"), {})


# -- training with the Trainer ------------------------------------------------------------


def test_trains_on_digits_and_feeds_the_diagnostics(run) -> None:
    name, _, history = run
    assert len(history) == STEPS and history.skipped == 0
    assert all(math.isfinite(r["loss"]) for r in history)
    streaks = mr.diagnostics.domination(history)
    eps = mr.diagnostics.trajectory(history, "eps")
    assert set(eps) == {"linf", "l2", "l1"}
    if name == "random_player":
        gamma = mr.diagnostics.trajectory(history, "gamma")
        assert all(sorted(g[s] for g in gamma.values()) == [0, 0, 1] for s in range(STEPS))
        for p in _players():  # fixed budgets (float32 tensors in the state)
            assert eps[p.name] == pytest.approx([p.eps] * STEPS, rel=1e-6)
        assert sum(streaks.dominated.values()) == STEPS  # track_domination: every step
    else:
        factors = mr.diagnostics.trajectory(history, "factor")
        base = {p.name: p.eps for p in _players()}
        for r in history:  # the budgets of a step follow its own measured losses
            losses = r["player_loss"]
            mean = sum(losses.values()) / 3
            for p, f in r["factor"].items():
                assert f == pytest.approx(min(max(mean / losses[p], 0.5), 2.0), rel=1e-5)
                assert r["eps"][p] == pytest.approx(base[p] * f, rel=1e-5)
        assert any(f != 1.0 for fs in factors.values() for f in fs)
        assert streaks.count == 0  # no gradient norms measured: no dominant player


def test_resumes_bit_identically_from_a_checkpoint(run, ex, batches, tmp_path) -> None:
    name, uninterrupted, history = run
    first = _trainer(ex, name)
    for x, y in batches[: STEPS // 2]:
        first.step(x, y)
    path = tmp_path / "checkpoint.pt"
    mr.checkpoint.save(path, {"trainer": first.state_dict()})
    del first
    resumed = _trainer(ex, name, model_seed=1)  # other initial weights: the load must set them
    resumed.load_state_dict(mr.checkpoint.load(path)["trainer"])
    rest = [resumed.step(x, y) for x, y in batches[STEPS // 2 :]]
    assert [r["eps"] for r in rest] == [r["eps"] for r in history.records[STEPS // 2 :]]
    assert [r["gamma"] for r in rest] == [r["gamma"] for r in history.records[STEPS // 2 :]]
    here, there = resumed.model.state_dict(), uninterrupted.model.state_dict()
    assert all(torch.equal(here[k], there[k]) for k in there)


# -- torchrun -------------------------------------------------------------------------------

TWO_RANKS = """
import sys
sys.dont_write_bytecode = True
sys.path.insert(0, "docs/examples")
sys.path.insert(0, "tests")
import torch, torch.distributed as dist
import multirobust as mr
from multirobust.data import digits
from multirobust.models import DigitsCNN
import test_examples as t

dist.init_process_group("gloo")
rank = dist.get_rank()
ex = {name: __import__(name) for name in t.NAMES}
x, y = digits(seed=0)[0].tensors
for name in t.NAMES:
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(DigitsCNN(width=8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    trainer = mr.Trainer(model, opt, t._game(ex, name), seed=0, progress=False)
    for s in range(2):  # each rank its own half of the batch
        i = (2 * s + rank) * 16
        record = trainer.step(x[i : i + 16], y[i : i + 16])
    mine = [
        torch.cat([p.detach().flatten() for p in model.parameters()]),
        torch.tensor(list(record["eps"].values())),
        torch.tensor([record["loss"]]),
    ]
    same = []
    for t_ in mine:
        both = [torch.empty_like(t_) for _ in range(2)]
        dist.all_gather(both, t_)
        same.append(torch.equal(*both))
    print(f"{name} rank {rank}: weights {same[0]} budgets {same[1]} losses {same[2]}")
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_both_run_under_torchrun_with_two_ranks(tmp_path) -> None:
    """2-rank gloo DDP: the ranks' weights and budgets agree, though their losses differ."""
    pytest.importorskip("sklearn")
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    out = subprocess.run(
        [*command, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    for name in NAMES:
        for rank in (0, 1):
            line = f"{name} rank {rank}: weights True budgets True losses False"
            assert line in out.stdout, out.stdout + out.stderr[-3000:]
