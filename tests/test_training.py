"""The Trainer (multirobust.training): records, timings of the adaptive policy, non-finite steps,
resume, end to end; random games through ``Trainer.step`` (hypothesis); bad input refused by name
before any step."""

import copy
import math
import statistics
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import fuzzing as fz
import multirobust as mr
from bad_input import TYPECHECKED, Row, refuse, table

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


# ---------------------------------------------------------------------------------------------
# Random games through Trainer.step (hypothesis)
# ---------------------------------------------------------------------------------------------


@st.composite
def trainer_cases(draw: st.DrawFn) -> dict:
    shape = draw(fz.image_shapes(b_min=2))
    # Budgets below the box's diameter: the Trainer refuses the others at the first step.
    game = draw(fz.games(math.prod(shape[1:]), high=0.9))
    policy = draw(st.sampled_from(["bare", "fixed", "adaptive"]))
    lo, hi = draw(st.floats(0.1, 1.0)), draw(st.floats(1.0, 10.0))
    dtype = draw(st.sampled_from(fz.DTYPES))
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
        "seed": draw(fz.SEEDS),
    }


def build_game(case: dict):
    aggregator = fz.build_aggregator(case["game"])
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


@settings(max_examples=fz.examples(25), deadline=None)
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
        x = fz.random_x(shape, dtype, seed + step, 0.3)
        y = fz.labels(shape[0], classes, seed + step)
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
        fz.assert_adversarial_batch(aggregator, x, y, trained[0], adv_y, eps)
    state = trainer.budgets
    assert bool(torch.isfinite(state.eps).all() and (state.eps > 0).all())
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.filterwarnings("ignore::multirobust.RobustnessWarning")
@settings(max_examples=fz.examples(20), deadline=None)
@given(fz.bad_batches("trainer"))
def test_trainer_rejects_bad_batches_naming_the_argument(case: dict) -> None:
    fz.check_bad_batch(case)


@pytest.mark.parametrize("form", ["numpy", "list"])
@pytest.mark.parametrize("argument", ["x", "y"])
def test_trainer_rejects_batches_that_are_not_tensors(argument: str, form: str) -> None:
    x, y = fz.random_x((4, 1, 4, 4), torch.float32, 0, 0.3), fz.labels(4, 3, 0)
    batch = {"x": x, "y": y}
    batch[argument] = batch[argument].numpy() if form == "numpy" else batch[argument].tolist()
    call, _ = fz.bad_batch_call("trainer", batch["x"], batch["y"])
    fz.assert_rejected(call, argument)


@settings(max_examples=fz.examples(5), deadline=None)
@given(value=st.one_of(st.integers(-10, 0), st.sampled_from([1.5, "2", None, math.nan, True])))
def test_bad_trainer_settings_are_rejected_naming_the_argument(value: object) -> None:
    fz.check_bad_setting("trainer.max_consecutive_skips", value, None, None)


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

LINF1 = mr.linf(eps=0.1, alpha=0.05, steps=1)


def model16() -> nn.Module:
    """A 3-class linear model of inputs [b, 1, 4, 4]."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def small_trainer(net: nn.Module | None = None, **kw) -> mr.Trainer:
    net = model16() if net is None else net
    return mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.max_(LINF1), **kw)


def batch4() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 1, 4, 4, generator=g), torch.arange(4) % 3


def on(model: nn.Module, optimizer: object = None, game: object = None, **kw) -> mr.Trainer:
    opt = torch.optim.SGD(model.parameters(), lr=0.1) if optimizer is None else optimizer
    return mr.Trainer(model, opt, mr.max_(LINF1) if game is None else game, **kw)


def plateau() -> mr.Trainer:
    net = model16()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return on(net, opt, scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau(opt))


def not_logits() -> object:
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.Flatten(0))
    return on(model).step(*data(8).tensors)


BAD_INPUT = [
    Row(
        "model-a-string",
        "type",
        lambda: mr.Trainer("net", torch.optim.SGD(model16().parameters(), lr=0.1), mr.max_(LINF1)),
        TypeError,
        "parameter 'model'" if TYPECHECKED else r"model must be a torch.nn.Module, got str",
    ),
    Row(
        "model-a-string-untyped",
        "type",
        lambda: mr.Trainer("net", torch.optim.SGD(model16().parameters(), lr=0.1), mr.max_(LINF1)),
        TypeError,
        r"model must be a torch.nn.Module, got str",
        untyped=True,
    ),
    Row(
        "optimizer-a-string",
        "type",
        lambda: mr.Trainer(model16(), "sgd", mr.max_(LINF1)),
        TypeError,
        r"optimizer must be a torch.optim.Optimizer, got str",
        untyped=True,
    ),
    Row("a-player-for-a-game", "type", lambda: on(tiny_model(), game=mr.linf), TypeError, "game"),
    Row(
        "max_consecutive_skips-0",
        "value",
        lambda: small_trainer(max_consecutive_skips=0),
        ValueError,
        "max_consecutive_skips must be an int >= 1, got 0",
    ),
    Row(
        "seed-a-string",
        "type",
        lambda: small_trainer(seed="0"),
        TypeError,
        "seed must be an int",
        untyped=True,
    ),
    Row(
        "scheduler-a-string",
        "type",
        lambda: small_trainer(scheduler="cosine"),
        TypeError,
        r"scheduler must be a torch.optim.lr_scheduler",
        untyped=True,
    ),
    Row("scheduler-needs-a-metric", "type", plateau, TypeError, "ReduceLROnPlateau needs a metric"),
    Row(
        "optimizer-of-another-model",
        "value",
        lambda: on(model16(), torch.optim.SGD(model16().parameters(), lr=0.1)),
        ValueError,
        "optimizer holds none of the model's parameters",
    ),
    Row(
        "log_path-in-a-missing-folder",
        "out",
        lambda tmp_path: small_trainer(log_path=Path(tmp_path) / "missing" / "metrics.jsonl"),
        ValueError,
        "log_path",
    ),
    Row(
        "step-x-an-array",
        "type",
        lambda: small_trainer().step(batch4()[0].numpy(), batch4()[1]),
        TypeError,
        "parameter 'x'" if TYPECHECKED else r"x must be a torch\.Tensor of inputs",
    ),
    Row(
        "step-x-an-array-untyped",
        "type",
        lambda: small_trainer().step(batch4()[0].numpy(), batch4()[1]),
        TypeError,
        r"x must be a torch\.Tensor of inputs",
        untyped=True,
    ),
    Row(
        "unknown-validate",
        "value",
        lambda: small_trainer(validate="some"),
        ValueError,
        "validate must be one of 'every', 'first'; got 'some'",
    ),
    Row(
        "unknown-compile",
        "value",
        lambda: small_trainer(compile="fast"),
        ValueError,
        "compile must be one of 'default', 'reduce-overhead'",
    ),
    Row(
        "model-output-not-logits", "data", not_logits, ValueError, r"logits of shape \[b, classes\]"
    ),
]


@table(BAD_INPUT)
def test_bad_input(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)
