"""On a CUDA GPU: attacks and training run there, repeat with a seed, and the fast paths (bf16,
channels-last, compiled iterations, CUDA graphs) agree with eager fp32. Skipped without a GPU."""

import copy

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import multirobust as mr

pytestmark = pytest.mark.gpu

PLAYERS = (
    mr.linf(eps=0.1, alpha=0.05, steps=4),
    mr.l2(eps=0.5, alpha=0.25, steps=4),
    mr.l1(eps=2.0, alpha=0.5, steps=4, k_min=2, k_max=6),
)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 64, 5),
    ).cuda()


def batch(b: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 1, 8, 8, generator=g).cuda(), torch.randint(0, 5, (b,), generator=g).cuda()


@pytest.mark.parametrize("player", PLAYERS, ids=lambda p: p.name)
def test_attacks_on_cuda_are_feasible_and_repeat_bit_for_bit(player) -> None:
    net, (x, y) = model(), batch()
    runs = [mr.pgd(player, restarts=2)(net, x, y, seed=3) for _ in range(2)]
    assert runs[0].is_cuda and torch.equal(runs[0], runs[1])
    assert bool((player.size(runs[0] - x) <= player.eps * (1 + 1e-4) + 1e-6).all())
    assert bool(((runs[0] >= 0) & (runs[0] <= 1)).all())


def train(game, compile: bool | str = False, amp: bool = False, steps: int = 3):
    net = model()
    trainer = mr.Trainer(
        net, torch.optim.SGD(net.parameters(), lr=0.05), game, seed=1, compile=compile, amp=amp
    )
    x, y = batch()
    records = [trainer.step(x, y) for _ in range(steps)]
    return copy.deepcopy(net.state_dict()), records


GAMES = [mr.adaptive(mr.msd(*PLAYERS, steps=4), timing="lagged"), mr.adaptive(mr.max_(*PLAYERS))]


@pytest.mark.parametrize("game", GAMES, ids=["msd+ab", "max+ab"])
def test_training_on_cuda_repeats_with_a_seed(game) -> None:
    """To float rounding, not bit for bit: cuDNN's fp32 kernels may sum in another order from run
    to run (docs/reliability.md; measured by benchmarks/cuda_determinism.py)."""
    (w0, r0), (w1, r1) = train(game), train(game)
    assert [r["loss"] for r in r0] == pytest.approx([r["loss"] for r in r1], rel=1e-5)
    for k, v in w0.items():
        torch.testing.assert_close(w1[k], v, atol=1e-6, rtol=1e-5)


@pytest.mark.usefixtures("untyped")
@pytest.mark.parametrize("compile", [True, "reduce-overhead"])
@pytest.mark.parametrize("game", GAMES, ids=["msd+ab", "max+ab"])
def test_compiled_training_on_cuda_matches_eager(game, compile) -> None:
    (w_eager, r_eager), (w_fast, r_fast) = train(game), train(game, compile=compile)
    for k, v in w_eager.items():
        torch.testing.assert_close(w_fast[k], v, atol=1e-4, rtol=1e-3)
    assert r_fast[-1]["eps"] == pytest.approx(r_eager[-1]["eps"], rel=1e-3)


@pytest.mark.usefixtures("untyped")
@pytest.mark.parametrize("game", GAMES, ids=["msd+ab", "max+ab"])
def test_fast_path_skips_no_cuda_graph(game) -> None:
    """Under ``compile="reduce-overhead"`` every compiled attack iteration, last-iterate scorer
    and per-player gradient is replayed as a CUDA graph: torch skipped none of them (a skip is
    logged with its reason under ``TORCH_LOGS=cudagraphs``)."""
    counters.clear()
    train(game, compile="reduce-overhead", amp=True)
    assert counters["inductor"]["cudagraph_skips"] == 0


def test_bf16_training_on_cuda_stays_finite_and_close() -> None:
    game = GAMES[0]
    (_, r32), (_, r16) = train(game), train(game, amp=True)
    assert all(r["skipped"] is False for r in r16)
    assert r16[-1]["loss"] == pytest.approx(r32[-1]["loss"], rel=0.1)


def test_msd_attack_makes_no_host_sync_on_cuda() -> None:
    # tests/test_host_syncs.py counts reads on CPU; this also catches blocking copies and
    # value-sized ops, which only CUDA shows.
    net, (x, y) = model(), batch()
    agg = mr.msd(*PLAYERS, steps=4)
    eps, alpha = agg.base_budgets(x.device)
    gen = torch.Generator(device="cuda").manual_seed(0)
    agg.perturb(net, x, y, eps, alpha, gen)  # warm-up: lazy CUDA initialisation may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        agg.perturb(net, x, y, eps, alpha, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
