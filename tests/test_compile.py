"""Compiled attack iterations: traced whole (no graph break), and equal to eager (CPU; slow:
compiling takes a minute)."""

import copy
import subprocess
import sys

import pytest
import torch

import multirobust as mr
from multirobust import _compile, gradients
from multirobust.aggregators import msd_iteration
from multirobust.attacks import pgd_iteration, pgd_score
from test_training import L1, L2, LINF
from test_training import tiny_model as model

PLAYERS = tuple(p(steps=3) for p in (LINF, L2, L1))


@pytest.mark.usefixtures("untyped")
def test_attack_iterations_and_player_gradients_trace_as_one_graph():
    """A graph break would split an iteration, or (inside the players' loop) make Dynamo fall
    back to eager for all of it; the l_1 player's random k is drawn outside (``draw``)."""
    net, g = model().eval(), torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 6, 6, generator=g), torch.randint(0, 5, (4,), generator=g)
    agg = mr.msd(*PLAYERS)
    eps, alpha = agg.base_budgets()
    rngs = tuple(p.draw(x, g) for p in PLAYERS)
    with torch.no_grad():
        explained = [
            torch._dynamo.explain(msd_iteration)(net, PLAYERS, x, y, x * 0, eps, alpha, rngs)
        ]
        for i, p in enumerate(PLAYERS):
            args = (net, p, x, y, x * 0, eps[i], alpha[i], rngs[i])
            explained.append(torch._dynamo.explain(pgd_iteration)(*args))
            explained.append(torch._dynamo.explain(pgd_score)(net, p, x, y, x * 0))
        net.train()
        params = {n: p.detach() for n, p in net.named_parameters()}
        buffers = {n: t.clone() for n, t in net.named_buffers()}
        grads = (net, params, buffers, x, y, "l2")  # (vmapped: the test-time type checker's
        explained.append(torch._dynamo.explain(gradients._one_player)(*grads))  # wrappers break)
    for e in explained:
        assert (e.graph_count, e.graph_break_count) == (1, 0), e.break_reasons


NO_INPUT_WRITES = """
import torch
from torch import nn
from torch._dynamo.backends.common import aot_autograd
from multirobust import gradients

graphs = []
def keep(gm, example_inputs):
    graphs.append(gm)
    return gm.forward

torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                    nn.Linear(4 * 36, 5)).train()
k, x, y = 3, torch.rand(3, 4, 1, 6, 6), torch.randint(0, 5, (4,))
params = {n: p.detach() for n, p in net.named_parameters()}
buffers = dict(net.named_buffers())
before = {n: t.clone() for n, t in buffers.items()}
backend = aot_autograd(fw_compiler=keep)
with torch.no_grad():
    if PATH == "loop":
        torch.compile(gradients._one_player, backend=backend)(net, params, buffers, x[0], y, "l2")
    else:
        stacked = {n: t.unsqueeze(0).expand(k, *t.shape) for n, t in buffers.items()}
        torch.compile(gradients._all_players, backend=backend)(net, params, stacked, x, y, "l2")
(graph,) = graphs
outputs = next(n for n in graph.graph.nodes if n.op == "output").args[0]
print(len(outputs), all(torch.equal(t, before[n]) for n, t in buffers.items()))
"""


@pytest.mark.parametrize("path", ["loop", "vmap"])
def test_compiled_player_gradient_writes_none_of_its_inputs(path):
    """CUDA graphs skip a compiled graph that mutates a non-static input. BatchNorm in train
    mode updates its running statistics, so each player's buffers are copied inside the gradient
    function: the traced graph returns the norm and the loss only (a mutated buffer would be a
    third output, copied back), and the buffers are untouched. In a fresh interpreter: Dynamo
    cannot trace the test run's type-checking wrappers inside vmap."""
    script = f"PATH = {path!r}\n{NO_INPUT_WRITES}"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["2", "True"]


def test_compiled_attacks_score_their_last_iterate_compiled(monkeypatch):
    """A compiled PGD run scores its last iterate with the compiled ``pgd_score`` (a CUDA graph
    under ``"reduce-overhead"``), not an eager forward pass."""
    called = []

    def fake_compile(fn, mode):  # records calls instead of compiling
        def wrapped(*args):
            called.append(fn.__name__)
            return fn(*args)

        return wrapped

    monkeypatch.setattr(_compile, "_compiled", fake_compile)
    net, g = model().eval(), torch.Generator().manual_seed(0)
    x, y = torch.rand(4, 1, 6, 6, generator=g), torch.randint(0, 5, (4,), generator=g)
    mr.max_(*PLAYERS).perturb(net, x, y, generator=g, compiled=True)
    assert called.count("pgd_iteration") == sum(p.steps for p in PLAYERS)
    assert called.count("pgd_score") == len(PLAYERS)


def test_unknown_compile_mode_is_refused():
    net = model()
    with pytest.raises(ValueError, match="compile must be one of 'default', 'reduce-overhead'"):
        mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.max_(*PLAYERS), compile="x")


@pytest.mark.slow
@pytest.mark.usefixtures("untyped")
@pytest.mark.parametrize(
    "game", [mr.adaptive(mr.msd(*PLAYERS, steps=3)), mr.max_(*PLAYERS)], ids=["msd+ab", "max"]
)
def test_compiled_step_equals_eager_step(game):
    """Tolerance: atol 1e-5 on the weights after two steps (kernel fusion reorders float sums)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(8, 1, 6, 6, generator=g), torch.randint(0, 5, (8,), generator=g)
    weights, records = [], []
    for compiled in (False, True):
        net = model()
        t = mr.Trainer(
            net, torch.optim.SGD(net.parameters(), lr=0.1), game, seed=1, compile=compiled
        )
        records.append([t.step(x, y) for _ in range(2)])
        weights.append(copy.deepcopy(net.state_dict()))
    for k, v in weights[0].items():
        torch.testing.assert_close(weights[1][k], v, atol=1e-5, rtol=1e-4)
    assert records[0][-1]["gamma"] == pytest.approx(records[1][-1]["gamma"])
    assert records[0][-1]["eps"] == pytest.approx(records[1][-1]["eps"], rel=1e-4)
