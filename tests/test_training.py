"""The Trainer: records, timings of the adaptive policy, non-finite steps, resume, end to end."""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import multirobust as mr

LINF = mr.linf(eps=0.1, alpha=0.05, steps=2)
L2 = mr.l2(eps=0.5, alpha=0.25, steps=2)
L1 = mr.l1(eps=2.0, alpha=0.5, steps=2, k_min=2, k_max=6)


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 36, 5),
    )


def data(n: int = 24) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.rand(n, 1, 6, 6, generator=g), torch.randint(0, 5, (n,), generator=g)
    )


def trainer(game, **kw) -> mr.Trainer:
    model = tiny_model()
    return mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.05), game, **kw)


GAMES = {
    "max": mr.max_(LINF, L2, L1),
    "avg": mr.avg(LINF, L2, L1),
    "msd": mr.msd(LINF, L2, L1, steps=3),
    "max+ab same-batch": mr.adaptive(mr.max_(LINF, L2, L1)),
    "avg+ab lagged l1": mr.adaptive(mr.avg(LINF, L2, L1), norm="l1", timing="lagged"),
    "msd+ab same-batch": mr.adaptive(mr.msd(LINF, L2, L1, steps=3), norm="l2"),
    "msd+ab lagged": mr.adaptive(mr.msd(LINF, L2, L1, steps=3), timing="lagged", probe_steps=2),
    "msd tracked": mr.fixed(mr.msd(LINF, L2, L1, steps=3), track_domination=True, probe_steps=2),
}


@pytest.mark.parametrize("name", list(GAMES))
def test_every_game_trains_and_records(name, tmp_path):
    game = GAMES[name]
    log = tmp_path / "metrics.jsonl"
    t = trainer(game, log_path=log)
    before = copy.deepcopy(t.model.state_dict())
    history = t.fit(DataLoader(data(), batch_size=8), epochs=1)
    assert len(history) == 3 and history.skipped == 0
    rec = history[-1]
    assert set(rec["eps"]) == set(rec["gamma"]) == {"linf", "l2", "l1"}
    changed = any(not torch.equal(v, before[k]) for k, v in t.model.state_dict().items())
    assert changed
    needs = isinstance(game, mr.Adaptive) or getattr(game, "track_domination", False)
    assert (rec["grad_norm"] is not None) == needs
    assert (rec["dominant"] is not None) == needs
    if needs:
        assert rec["dominant"] == max(rec["grad_norm"], key=rec["grad_norm"].get)
    assert mr.History.from_jsonl(log).records == history.records


def test_records_carry_the_learning_rate_their_update_used():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = mr.piecewise_linear(opt, [0, 1, 2], [0.0, 1.0, 0.0], steps_per_epoch=2)
    t = mr.Trainer(model, opt, mr.max_(LINF), scheduler=schedule)
    history = t.fit(DataLoader(data(16), batch_size=8), epochs=2)
    assert [r["lr"] for r in history] == [0.0, 0.5, 1.0, 0.5]  # the schedule from its start


def test_same_batch_budgets_follow_this_batch_gradients():
    t = trainer(mr.adaptive(mr.max_(LINF, L2, L1)))
    rec = t.step(*data(8).tensors)
    norms = torch.tensor([rec["grad_norm"][n] for n in ("linf", "l2", "l1")])
    want = mr.adaptive_factors(norms)[0] * torch.tensor([0.1, 0.5, 2.0])
    got = torch.tensor([rec["eps"][n] for n in ("linf", "l2", "l1")])
    torch.testing.assert_close(got, want)


def test_lagged_budgets_apply_on_the_next_batch():
    t = trainer(mr.adaptive(mr.avg(LINF, L2, L1), timing="lagged"))
    x, y = data(16).tensors
    first = t.step(x[:8], y[:8])
    assert first["eps"] == pytest.approx({"linf": 0.1, "l2": 0.5, "l1": 2.0})
    second = t.step(x[8:], y[8:])
    norms = torch.tensor([first["grad_norm"][n] for n in ("linf", "l2", "l1")])
    want = (mr.adaptive_factors(norms)[0] * torch.tensor([0.1, 0.5, 2.0])).tolist()
    assert [second["eps"][n] for n in ("linf", "l2", "l1")] == pytest.approx(want)


def spy_on_each_player(agg, monkeypatch) -> list[tuple]:
    """Record ``(eps, alpha, steps)`` of every per-player attack (``attack_each``), whether the
    aggregator (MAX, AVG) or the measurement of the players (``measure_players``) runs it."""
    import multirobust.aggregators
    import multirobust.measure

    seen = []
    attack_each = multirobust.aggregators.attack_each

    def spy(model, players, x, y, eps, alpha, generator, *, steps=None, **kwargs):
        assert players == agg.players
        seen.append((eps.tolist(), alpha.tolist(), steps))
        return attack_each(model, players, x, y, eps, alpha, generator, steps=steps, **kwargs)

    monkeypatch.setattr(multirobust.aggregators, "attack_each", spy)
    monkeypatch.setattr(multirobust.measure, "attack_each", spy)
    return seen


EPS0, ALPHA0 = [0.1, 0.5, 2.0], [0.05, 0.25, 0.5]  # of LINF, L2, L1


@pytest.mark.parametrize("probe_steps", [1, 2, 10])
@pytest.mark.parametrize("policy", ["adaptive lagged", "fixed tracked"])
def test_msd_probes_take_steps_that_can_reach_the_boundary(policy, probe_steps, monkeypatch):
    """MSD's probes run at the base budgets with step size max(alpha, eps / probe_steps): the
    players' own step sizes are tuned to their own step counts, and probes too short to reach
    the boundary gave other budgets than full attacks (benchmarks/probe_fidelity.py)."""
    agg = mr.msd(LINF, L2, L1, steps=2)
    seen = spy_on_each_player(agg, monkeypatch)
    if policy == "adaptive lagged":
        game = mr.adaptive(agg, timing="lagged", probe_steps=probe_steps)
    else:
        game = mr.fixed(agg, track_domination=True, probe_steps=probe_steps)
    trainer(game).step(*data(8).tensors)
    want = [max(a, e / probe_steps) for e, a in zip(EPS0, ALPHA0, strict=True)]
    assert len(seen) == 1
    assert seen[0][0] == pytest.approx(EPS0) and seen[0][2] == probe_steps
    assert seen[0][1] == pytest.approx(want)


@pytest.mark.parametrize(
    "game",
    [
        mr.adaptive(mr.msd(LINF, L2, L1, steps=2), probe_steps=1),
        mr.adaptive(mr.max_(LINF, L2, L1), timing="lagged", probe_steps=1),
    ],
    ids=["msd same-batch", "max lagged"],
)
def test_full_per_player_attacks_keep_the_players_step_sizes(game, monkeypatch):
    """Same-batch AdaptiveBudget's attacks, and MAX's own attacks that the lagged timing reuses,
    run with each player's own steps and step size: no probes."""
    seen = spy_on_each_player(game.aggregator, monkeypatch)
    trainer(game).step(*data(8).tensors)
    assert len(seen) == 1
    assert seen[0][0] == pytest.approx(EPS0) and seen[0][2] is None
    assert seen[0][1] == pytest.approx(ALPHA0)


def test_a_step_marks_its_phases_for_the_profiler():
    """``benchmarks/profile_step.py`` reads these ranges to say where a step's time goes."""
    t = trainer(GAMES["msd+ab lagged"])
    x, y = data(8).tensors
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t.step(x, y)
    names = {e.key for e in prof.key_averages() if e.key.startswith("multirobust.")}
    assert names == {
        "multirobust.check",
        "multirobust.attack",
        "multirobust.player_attacks",
        "multirobust.player_gradients",
        "multirobust.budgets",
        "multirobust.loss",
        "multirobust.update",
    }


def test_same_seed_gives_identical_training():
    runs = []
    for _ in range(2):
        t = trainer(mr.adaptive(mr.msd(LINF, L2, L1, steps=2)), seed=7)
        h = t.fit(DataLoader(data(), batch_size=8), epochs=1)
        runs.append((h.column("loss"), copy.deepcopy(t.model.state_dict())))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        assert torch.equal(v, runs[1][1][k])


def test_resume_from_state_dict_matches_an_uninterrupted_run():
    loader = DataLoader(data(), batch_size=8)
    game = mr.adaptive(mr.max_(LINF, L2, L1), timing="lagged")
    full = trainer(game, seed=3)
    full.fit(loader, epochs=2)
    first = trainer(game, seed=3)
    first.fit(loader, epochs=1)
    state = copy.deepcopy(first.state_dict())
    resumed = trainer(game, seed=99)
    resumed.load_state_dict(state)
    resumed.fit(loader, epochs=1)
    assert resumed.epochs_done == 2 and resumed.steps_done == full.steps_done
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


class Poisoned(nn.Module):
    """A model whose logits turn NaN while ``poison`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.net = tiny_model()
        self.poison = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out * float("nan") if self.poison else out


def test_non_finite_steps_are_skipped_counted_and_never_written():
    model = Poisoned()
    t = mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mr.max_(LINF), seed=0)
    x, y = data(8).tensors
    t.step(x, y)
    good = copy.deepcopy(model.state_dict())
    model.poison = True
    rec = t.step(x, y)
    assert rec["skipped"]
    for k, v in model.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, good[k]), k
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_too_many_consecutive_non_finite_steps_stop_the_run():
    model = Poisoned()
    model.poison = True
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = mr.Trainer(model, opt, mr.max_(LINF), max_consecutive_skips=2)
    with pytest.raises(mr.NonFiniteTraining, match="2 consecutive steps"):
        t.fit(DataLoader(data(), batch_size=8), epochs=1)


class Prefetcher:
    """An iterator that resets itself in ``__iter__`` (as GPU prefetchers do): re-iterable."""

    def __init__(self, batches):
        self.batches, self.i = batches, 0

    def __iter__(self):
        self.i = 0
        return self

    def __next__(self):
        if self.i == len(self.batches):
            raise StopIteration
        self.i += 1
        return self.batches[self.i - 1]


def test_fit_accepts_any_reiterable_loader_and_explains_a_spent_one():
    batches = [tuple(data(8).tensors)]
    assert len(trainer(mr.max_(LINF)).fit(Prefetcher(batches), epochs=2)) == 2
    t = trainer(mr.max_(LINF))
    spent = iter(batches)
    t.fit(spent, epochs=1)  # one epoch at a time, as fit_with_checkpoints calls it
    with pytest.raises(ValueError, match="it did before: a one-shot iterator is spent"):
        t.fit(spent, epochs=1)


def test_validate_first_checks_the_first_batch_and_any_batch_of_another_shape():
    x, y = data(8).tensors
    fast = trainer(mr.max_(LINF), validate="first")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fast.step(x + 2, y)  # the first batch: checked in full
    fast.step(x, y)
    fast.step(x.clamp(0.5, 1) + 0.5, y)  # same shape and dtype: its values are trusted
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fast.step(x[:4] + 2, y[:4])  # another shape: checked in full again
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        trainer(mr.max_(LINF)).step(x.clamp(0.5, 1) + 0.5, y)  # "every" (default) always checks
    with pytest.raises(ValueError, match="validate must be one of 'every', 'first'"):
        trainer(mr.max_(LINF), validate="never")


# -- bad input ---------------------------------------------------------------------------------


def test_model_output_not_logits():
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.Flatten(0))
    t = mr.Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), mr.max_(LINF))
    with pytest.raises(ValueError, match=r"logits of shape \[b, classes\]"):
        t.step(*data(8).tensors)


@pytest.mark.parametrize("item", [torch.rand(8, 1, 6, 6), (torch.rand(8, 1, 6, 6),), {"x": 1}])
def test_loader_must_yield_pairs(item):
    t = trainer(mr.max_(LINF))
    with pytest.raises(TypeError, match=r"\(x, y\) pairs"):
        t.fit([item], epochs=1)


def test_empty_loader():
    with pytest.raises(ValueError, match="no batch"):
        trainer(mr.max_(LINF)).fit([], epochs=1)


def test_bad_game_and_epochs():
    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="game"):
        mr.Trainer(model, opt, mr.linf)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epochs"):
        mr.Trainer(model, opt, mr.max_(LINF)).fit(DataLoader(data(), batch_size=8), epochs=0)


def test_piecewise_linear_schedule_matches_the_paper_knots():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=123.0)
    sched = mr.piecewise_linear(opt, [0, 20, 40, 50], [0, 0.1, 0.005, 0], steps_per_epoch=10)
    lrs = []
    for _ in range(500):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[199] == pytest.approx(0.1) and lrs[399] == pytest.approx(0.005)
    assert lrs[-1] == pytest.approx(0.0) and lrs[99] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="increase strictly"):
        mr.piecewise_linear(opt, [0, 0], [0, 1], steps_per_epoch=1)


def test_a_lazy_model_resumes():
    """The model check of load_state_dict skips a lazy module's uninitialised parameters."""

    def trainer_of_a_lazy_model() -> mr.Trainer:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.LazyLinear(5))
        return mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.max_(LINF))

    trained = trainer_of_a_lazy_model()
    trained.step(*data(8).tensors)
    fresh = trainer_of_a_lazy_model()
    fresh.load_state_dict(trained.state_dict())
    assert torch.equal(fresh.model[1].weight, trained.model[1].weight)
