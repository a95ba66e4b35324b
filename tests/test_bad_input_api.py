"""Bad input across the public API, beyond tests/test_bad_input.py: one test per row of
docs/bad-input.md (tests/test_bad_input_table.py keeps the two in step).

Each test checks the exception type and a message that names the argument (and, where there is
one, the fix). The test run type-checks the package (jaxtyping + beartype); users run without it.
``untyped()`` turns the type checker off (jaxtyping's own switch, read at every call) so a test
sees what users see; where an annotation answers first in the test run, the test checks that too.
A known hole is a strict xfail whose reason names the file and the fix (none open now).
"""

import copy
import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

import multirobust as mr
from multirobust import _checks, checkpoint, diagnostics
from multirobust import data as mrdata
from multirobust.evaluation import Curve, Report, combine, l1_eval, plot_curves, union_accuracy
from multirobust.paper import experiment, svm
from typechecking import untyped

ROOT = Path(__file__).resolve().parents[1]
TYPECHECKED = hasattr(mr.pgd, "__wrapped__")  # the jaxtyping import hook wraps every function
LINF = mr.linf(eps=0.1, alpha=0.05, steps=1)
L2 = mr.l2(eps=0.5, alpha=0.25, steps=1)
CUDA = pytest.param("cuda", marks=pytest.mark.gpu)


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def batch(b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, 1, 4, 4, generator=g), torch.arange(b) % 3


def trainer(net: nn.Module | None = None, **kw) -> mr.Trainer:
    net = model() if net is None else net
    return mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.max_(LINF), **kw)


def recipe(name: str):
    """A recipe module from recipes/, imported under a private name."""
    spec = importlib.util.spec_from_file_location(f"_bad_input_{name}", ROOT / "recipes" / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Players
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("player", [mr.linf, mr.l2, mr.l1, l1_eval], ids=lambda p: type(p).__name__)
def test_player_unknown_setting(player) -> None:
    with pytest.raises(TypeError, match=r"has no setting 'epsilon'; its settings are eps, alpha"):
        player(epsilon=0.1)


def test_player_name_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        mr.linf(name="")


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"shrink": 0.5}, r"l1\.shrink must be a number >= 1"),
        ({"gap": 0.6}, r"l1\.gap must be None or in \[0, 0\.5\)"),
        ({"k_min": 5, "k_max": 2}, r"l1\.k_max must be an int >= 5"),
        ({"projection": "box"}, r"l1\.projection must be one of 'ball', 'ball-box'"),
    ],
)
def test_l1_eval_settings_out_of_range(changes: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        l1_eval(**changes)


# ---------------------------------------------------------------------------------------------
# The attack's call: model, seed, generator, devices
# ---------------------------------------------------------------------------------------------


def test_pgd_model_must_be_a_module() -> None:
    x, y = batch()
    with untyped(), pytest.raises(TypeError, match=r"model must be a torch.nn.Module"):
        mr.pgd(LINF)(lambda t: t.flatten(1)[:, :3], x, y)


def test_pgd_seed_must_be_an_int() -> None:
    x, y = batch()
    with untyped(), pytest.raises(TypeError, match="seed must be an int or None"):
        mr.pgd(LINF)(model(), x, y, seed="0")


def test_pgd_generator_must_be_a_generator() -> None:
    x, y = batch()
    with untyped(), pytest.raises(TypeError, match=r"generator must be a torch.Generator"):
        mr.pgd(LINF)(model(), x, y, generator="g")


@pytest.mark.gpu
def test_pgd_generator_on_another_device() -> None:
    x, y = (t.cuda() for t in batch())
    l1 = mr.l1(eps=2.0, alpha=0.5, steps=2, k_min=2, k_max=4)  # its random step uses the generator
    with pytest.raises(ValueError, match="generator is on cpu but x is on cuda"):
        mr.pgd(l1)(model().cuda(), x, y, generator=torch.Generator())


def test_seed_and_generator_checks_name_the_argument() -> None:
    """The seed and generator checks themselves, as users get them."""
    x, _ = batch()
    with pytest.raises(TypeError, match="seed must be an int or None, got str '0'"):
        _checks.seed("seed", "0")
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None, got str"):
        _checks.generator("g", x)
    with pytest.raises(ValueError, match="generator is on cpu but x is on meta"):
        _checks.generator(torch.Generator(), x.to("meta"))
    assert _checks.seed("seed", None) is None and _checks.generator(None, x) is None


def model_on(device: str) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3, device=device))


def call(entry: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Call one of the public entry points that take a batch."""
    if entry == "pgd":
        return mr.pgd(LINF)(net, x, y)
    if entry == "Trainer.step":
        return trainer(net).step(x, y)
    if entry == "Trainer.fit":
        return trainer(net).fit([(x, y)], epochs=1)
    if entry == "evaluate":
        return mr.evaluate(net, (x, y), [LINF], restarts=0, checks=False)
    return mr.robustness_curve(net, (x, y), LINF, [0.1], restarts=0, checks=False)


ENTRIES = ["pgd", "Trainer.step", "Trainer.fit", "evaluate", "robustness_curve"]


@pytest.mark.parametrize("entry", ["pgd", "Trainer.step", "evaluate"])
@pytest.mark.parametrize("kind", ["rank", "dtype"])
def test_x_must_fit_the_model(entry: str, kind: str) -> None:
    x, y = batch()
    x = torch.rand(4, 2, 4, 4) if kind == "rank" else x.double()
    with pytest.raises(ValueError, match=r"x \(shape .*\) does not fit the model"):
        call(entry, model(), x, y)


@pytest.mark.parametrize("device", ["meta", CUDA])
def test_pgd_x_on_another_device_than_the_model(device: str) -> None:
    x, y = batch()  # on the CPU; Trainer and evaluate move the batch, pgd does not
    with pytest.raises(ValueError, match=f"the model is on {device}.*move x and y there"):
        mr.pgd(LINF)(model_on(device), x, y)


def test_forward_check_names_x_and_the_fix() -> None:
    """The forward check that check_batch calls, as users get it."""
    x, _ = batch()
    with pytest.raises(ValueError, match=r"x \(shape \[4, 2, 4, 4\].*\) does not fit the model, "):
        _checks.forward(model(), torch.rand(4, 2, 4, 4))
    with pytest.raises(ValueError, match=r"parameters are torch\.float32: convert x"):
        _checks.forward(model(), x.double())
    with pytest.raises(ValueError, match=r"the model is on meta: move x and y there"):
        _checks.forward(model_on("meta"), x)
    assert _checks.forward(model(), x).shape == (4, 3)


@pytest.mark.parametrize("device", ["meta", CUDA])
def test_y_on_another_device_than_x(device: str) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=f"y is on {device}.* but x is on cpu; move both"):
        mr.pgd(LINF)(model(), x, y.to(device))


@pytest.mark.gpu
def test_budget_tensors_and_batches_on_another_device_are_moved() -> None:
    x, y = batch()
    net = model()
    eps = torch.full((4,), 0.1, device="cuda")
    x_adv = mr.pgd(LINF)(net, x, y, eps=eps, alpha=eps / 2, seed=0)
    assert x_adv.device.type == "cpu" and float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    eps = torch.full((4,), 0.1)
    x_adv = mr.pgd(LINF)(net.cuda(), x.cuda(), y.cuda(), eps=eps, alpha=eps / 2, seed=0)
    assert x_adv.device.type == "cuda"
    agg = mr.max_(LINF, L2)
    out = agg.perturb(net, x.cuda(), y.cuda(), eps=torch.tensor([0.1, 0.5]))
    assert out.x.device.type == "cuda"
    record = trainer(model().cuda()).step(x, y)  # a CPU batch for a CUDA model: moved
    assert record["step"] == 1


def test_x_that_requires_grad_is_accepted_quietly() -> None:
    x, y = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x_adv = mr.pgd(LINF)(model(), x.requires_grad_(), y, seed=0)
    assert x_adv.shape == x.shape


@pytest.mark.parametrize("k", [1, 3])
def test_perturb_budgets_must_have_one_entry_per_player(k: int) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=r"eps must be a tensor \[K\] with one entry per player"):
        mr.max_(LINF, L2).perturb(model(), x, y, eps=torch.full((k,), 0.1))


# ---------------------------------------------------------------------------------------------
# Budget policies
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clamp", [(2.0, 0.5), (0.0, 2.0), (0.5, math.inf), (math.nan, 2.0)])
def test_adaptive_factors_clamp_is_checked(clamp: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="clamp must satisfy 0 < lo <= 1 <= hi < inf"):
        mr.adaptive_factors(torch.tensor([1.0, 2.0]), clamp=clamp)


@pytest.mark.parametrize("norms", [torch.ones(0), torch.ones(2, 2)], ids=["empty", "2-d"])
def test_adaptive_factors_norms_must_be_one_per_player(norms: torch.Tensor) -> None:
    if TYPECHECKED and norms.dim() == 2:  # the annotation `Float[Tensor, " k"]` answers first
        with pytest.raises(TypeError, match="parameter 'norms'"):
            mr.adaptive_factors(norms)
    with untyped(), pytest.raises(ValueError, match=r"norms must be a non-empty 1-d tensor \[K\]"):
        mr.adaptive_factors(norms)


def test_adaptive_factors_norms_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match=r"norms must be >= 0 \(gradient norms\), got \[1.0, -2.0"):
        mr.adaptive_factors(torch.tensor([1.0, -2.0, 3.0]))


@pytest.mark.parametrize("clamp", [(0.5,), (0.5, 1.0, 2.0), "wide"])
def test_adaptive_clamp_must_be_a_pair(clamp: object) -> None:
    if TYPECHECKED:  # the annotation `tuple[float, float] | None` answers first
        with pytest.raises(TypeError, match="parameter 'clamp'"):
            mr.adaptive(mr.msd(LINF), clamp=clamp)  # type: ignore[arg-type]
    with untyped(), pytest.raises(TypeError, match=r"clamp must be a pair \(lo, hi\)"):
        mr.adaptive(mr.msd(LINF), clamp=clamp)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "kwargs", "match"),
    [
        ("fixed", {"norm": "linf"}, "norm must be one of 'l1', 'l2'"),
        ("fixed", {"probe_steps": 0}, "probe_steps must be an int >= 1"),
        ("adaptive", {"probe_steps": 0}, "probe_steps must be an int >= 1"),
        ("adaptive", {"norm": "L2"}, "norm must be one of 'l1', 'l2'"),
    ],
)
def test_policy_settings_out_of_range(policy: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        getattr(mr, policy)(mr.msd(LINF), **kwargs)


def test_fixed_policy_around_a_non_aggregator() -> None:
    with untyped(), pytest.raises(TypeError, match=r"a budget policy wraps an aggregator"):
        mr.fixed(mr.adaptive(mr.max_(LINF)))  # type: ignore[arg-type]


class Brightness:
    """A non-additive player: its state is one brightness shift per example, not of x's shape."""

    name, eps, alpha, steps, restarts = "bright", 0.1, 0.05, 1, 0

    def zero(self, x):
        return x.new_zeros(x.shape[0])

    def init(self, x, eps, generator):
        return self.zero(x)

    def ascend(self, x, delta, grad, alpha, generator):
        return delta + alpha * grad.sign()  # grad is taken with respect to the state

    def project(self, x, delta, eps):
        return delta.clamp(-eps, eps)

    def size(self, delta):
        return delta.abs()

    def apply(self, x, delta):
        return (x + delta.view(-1, *[1] * (x.dim() - 1))).clamp(0, 1)


@pytest.mark.parametrize("order", ["linf-first", "bright-first"])
def test_msd_refuses_players_that_cannot_share_a_state(order: str) -> None:
    players = (LINF, Brightness()) if order == "linf-first" else (Brightness(), LINF)
    net = model()
    before = copy.deepcopy(net.state_dict())
    trainer = mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.msd(*players))
    with pytest.raises(ValueError, match=r"^msd needs players that share one state.*max_ or avg"):
        trainer.step(*batch())  # it used to fail inside torch, on a shape mismatch
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), mr.avg(*players)).step(*batch())


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize(
    "kind", ["nan", "inf", "outside-box", "label-range", "float-labels", "int32-labels"]
)
def test_every_entry_point_checks_the_batch_first(entry: str, kind: str) -> None:
    x, y = batch()
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
    net = model()
    before = copy.deepcopy(net.state_dict())
    error = TypeError if kind.endswith("labels") else ValueError
    with pytest.raises(error, match=match):
        call(entry, net, x, y)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # no update ran


def test_trainer_model_and_optimizer_must_be_torch_objects() -> None:
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    if TYPECHECKED:  # the annotations `nn.Module`, `torch.optim.Optimizer` answer first
        with pytest.raises(TypeError, match="parameter 'model'"):
            mr.Trainer("net", opt, mr.max_(LINF))  # type: ignore[arg-type]
    with untyped():
        with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got str"):
            mr.Trainer("net", opt, mr.max_(LINF))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"optimizer must be a torch.optim.Optimizer, got str"):
            mr.Trainer(net, "sgd", mr.max_(LINF))  # type: ignore[arg-type]


def test_trainer_max_consecutive_skips_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_consecutive_skips must be an int >= 1, got 0"):
        trainer(max_consecutive_skips=0)


def test_trainer_seed_must_be_an_int() -> None:
    with untyped(), pytest.raises(TypeError, match="seed must be an int"):
        trainer(seed="0")


def test_trainer_scheduler_must_be_a_scheduler() -> None:
    with untyped(), pytest.raises(TypeError, match=r"scheduler must be a torch.optim.lr_scheduler"):
        trainer(scheduler="cosine")
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(TypeError, match="ReduceLROnPlateau needs a metric"):
        mr.Trainer(net, opt, mr.max_(LINF), scheduler=plateau)


def test_trainer_optimizer_must_hold_the_models_parameters() -> None:
    net, other = model(), model()
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer holds none of the model's parameters"):
        mr.Trainer(net, opt, mr.max_(LINF))


def test_trainer_log_path_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="log_path"):
        trainer(log_path=tmp_path / "missing" / "metrics.jsonl")


def test_trainer_step_batch_must_be_tensors() -> None:
    x, y = batch()
    if TYPECHECKED:  # the annotation `x: Tensor` answers first
        with pytest.raises(TypeError, match="parameter 'x'"):
            trainer().step(x.numpy(), y)  # type: ignore[arg-type]
    with untyped(), pytest.raises(TypeError, match=r"x must be a torch\.Tensor of inputs"):
        trainer().step(x.numpy(), y)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"validate": "some"}, "validate must be one of 'every', 'first'; got 'some'"),
        ({"compile": "fast"}, "compile must be one of 'default', 'reduce-overhead'"),
    ],
)
def test_trainer_unknown_names(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        trainer(**kwargs)


def test_fit_loader_must_be_iterable() -> None:
    with untyped(), pytest.raises(TypeError, match="loader must be an iterable of"):
        trainer().fit(5, epochs=1)  # type: ignore[arg-type]


def test_fit_one_shot_iterator_for_several_epochs() -> None:
    x, y = batch()
    t = trainer()
    with pytest.raises(TypeError, match="loader is a one-shot iterator"):
        t.fit(iter([(x, y)]), epochs=2)
    assert t.steps_done == 0


def test_trainer_load_state_dict_needs_a_trainer_state_of_the_same_game() -> None:
    def of(game) -> mr.Trainer:
        net = model()
        return mr.Trainer(net, torch.optim.SGD(net.parameters(), lr=0.1), game)

    saved = of(mr.max_(LINF, L2)).state_dict()
    with pytest.raises(ValueError, match=r"state must be a Trainer.state_dict\(\), got missing"):
        of(mr.max_(LINF, L2)).load_state_dict(saved["model"])
    with pytest.raises(ValueError, match="saved by a game of 2 players, this trainer's has 1"):
        of(mr.max_(LINF)).load_state_dict(saved)
    # Another model whose first layer matches the saved one: torch would copy that layer before
    # raising for the rest; the check refuses before anything is loaded.
    torch.manual_seed(1)
    deeper = nn.Sequential(nn.Flatten(), nn.Linear(16, 3), nn.Linear(3, 3))
    other = mr.Trainer(deeper, torch.optim.SGD(deeper.parameters(), lr=0.1), mr.max_(LINF, L2))
    before = copy.deepcopy(deeper.state_dict())
    with pytest.raises(ValueError, match=r"another model .*: 2 of its tensors missing, 0 unknown"):
        other.load_state_dict(saved)
    assert all(torch.equal(v, deeper.state_dict()[k]) for k, v in before.items())


def test_fit_empty_dataloader() -> None:
    x, y = batch()
    t = trainer()
    loader = DataLoader(TensorDataset(x[:0], y[:0]), batch_size=2)
    with pytest.raises(ValueError, match="loader yielded no batch; pass a non-empty DataLoader"):
        t.fit(loader, epochs=1)
    assert t.steps_done == 0


@pytest.mark.parametrize(
    ("epochs", "values", "steps", "match"),
    [
        ([0, 1], [1.0], 1, "epochs and values must be lists of the same length >= 2"),
        ([0, 1], [1.0, -1.0], 1, r"values must be finite and >= 0"),
        ([0, 1], [1.0, math.nan], 1, r"values must be finite and >= 0"),
        ([0, 1], [1.0, 0.0], 0, "steps_per_epoch must be an int >= 1"),
    ],
)
def test_piecewise_linear_bad_knots(epochs: list, values: list, steps: int, match: str) -> None:
    opt = torch.optim.SGD(model().parameters(), lr=1.0)
    with pytest.raises(ValueError, match=match):
        mr.piecewise_linear(opt, epochs, values, steps_per_epoch=steps)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "linf"}, "norm must be one of 'l1', 'l2'; got 'linf'"),
        ({"method": "jit"}, r"method must be one of .*'vmap', 'loop'; got 'jit'"),
    ],
)
def test_player_gradients_unknown_names(kwargs: dict, match: str) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=match):
        mr.player_gradients(model(), torch.stack([x, x]), y, **kwargs)


def test_player_gradients_inputs_must_be_k_by_b() -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=r"inputs must be \[K, b, \.\.\.\]"):
        mr.player_gradients(model(), x, y)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"n": 0}, ValueError, "n must be an int >= 1, got 0"),
        ({"steps": 0}, ValueError, "steps must be an int >= 1, got 0"),
        ({"steps": {"linf": 0}}, ValueError, r"steps\['linf'\] must be an int >= 1, got 0"),
        ({"restarts": True}, TypeError, "restarts must be an int >= 0, got bool True"),
        ({"suite": "PGD"}, ValueError, "suite must be one of 'pgd', 'pgd-strong'"),
    ],
)
def test_evaluate_settings_out_of_range(kwargs: dict, error: type, match: str) -> None:
    x, y = batch()
    with pytest.raises(error, match=match):
        mr.evaluate(model(), (x, y), [LINF], **kwargs)


@pytest.mark.parametrize("entry", ["evaluate", "robustness_curve"])
def test_evaluate_seed_must_be_an_int(entry: str) -> None:
    x, y = batch()
    if entry == "evaluate":
        run = lambda: mr.evaluate(model(), (x, y), [LINF], seed="0")  # noqa: E731
    else:
        run = lambda: mr.robustness_curve(model(), (x, y), LINF, [0.1], seed="0")  # noqa: E731
    if TYPECHECKED:  # the annotation `seed: int | None` answers first
        with pytest.raises(TypeError, match="parameter 'seed'"):
            run()
    with untyped(), pytest.raises(TypeError, match="seed must be an int or None, got str"):
        run()


@pytest.mark.parametrize(
    ("threats", "match"),
    [
        ("linf", "threats must be a sequence of players, got str"),
        ({"linf": LINF}, "threats must be a sequence of players, got dict"),
        ([LINF, "l2"], "every threat must implement the Player protocol"),
    ],
    ids=["str", "dict", "list-with-str"],
)
def test_evaluate_threats_must_be_players(threats: object, match: str) -> None:
    x, y = batch()
    with pytest.raises(TypeError, match=match):
        mr.evaluate(model(), (x, y), threats)


@pytest.mark.parametrize("name", ["clean", "All"])
def test_threat_names_clean_and_all_are_reserved(name: str) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match=r"'clean' and 'All' are reserved.*rename with"):
        mr.evaluate(model(), (x, y), [LINF(name=name)])


def test_evaluate_model_must_be_a_module() -> None:
    x, y = batch()
    if TYPECHECKED:  # the annotation `model: nn.Module` answers first
        with pytest.raises(TypeError, match="parameter 'model'"):
            mr.evaluate(lambda t: t, (x, y), [LINF])  # type: ignore[arg-type]
    with (
        untyped(),
        pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got function"),
    ):
        mr.evaluate(lambda t: t, (x, y), [LINF])  # type: ignore[arg-type]


class _NoItems(IterableDataset):
    def __iter__(self):
        return iter(())


@pytest.mark.parametrize("kind", ["loader", "pair", "iterable"])
def test_evaluate_empty_data(kind: str) -> None:
    x, y = batch()
    data = {
        "loader": DataLoader(TensorDataset(x[:0], y[:0]), batch_size=2),
        "pair": (x[:0], y[:0]),
        "iterable": DataLoader(_NoItems(), batch_size=2),
    }[kind]
    start = "data is empty" if kind != "iterable" else "data yielded no examples"
    with pytest.raises(ValueError, match=f"{start}.*pass a DataLoader or a pair"):
        mr.evaluate(model(), data, [LINF])


class _Dicts(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        x, y = batch()
        return {"x": x[i], "y": y[i]}


def test_evaluate_loader_batches_must_be_pairs() -> None:
    x, y = batch()
    with pytest.raises(TypeError, match=r"each batch of the DataLoader must be a pair \(x, y\)"):
        mr.evaluate(model(), DataLoader(_Dicts(), batch_size=2), [LINF])
    triples = DataLoader(TensorDataset(x, x, y), batch_size=2)  # (x, x_aug, y): y is not item 1
    with pytest.raises(TypeError, match=r"pair \(x, y\) of tensors, got list of length 3$"):
        mr.evaluate(model(), triples, [LINF])
    with pytest.raises(ValueError, match=r"got a single label.*batch_size=None.*give it a batch"):
        mr.evaluate(model(), DataLoader(TensorDataset(x, y), batch_size=None), [LINF])


def test_evaluate_pair_of_a_tensor_and_an_array() -> None:
    x, y = batch()
    with pytest.raises(TypeError, match=r"but y is of type ndarray; .*torch\.as_tensor\(y\)$"):
        mr.evaluate(model(), (x, y.numpy()), [LINF])
    with pytest.raises(TypeError, match=r"but x is of type list; .*torch\.as_tensor\(x\)$"):
        mr.evaluate(model(), [x.tolist(), y], [LINF])
    with pytest.raises(TypeError, match=r"^data must be a torch DataLoader .* got list$"):
        mr.evaluate(model(), [(x, y), (x, y)], [LINF])  # two batches: no as_tensor advice


@pytest.mark.parametrize(
    ("budgets", "match"),
    [
        ([], "budgets must be a non-empty sequence of numbers > 0"),
        (0.1, "budgets must be a non-empty sequence of numbers > 0"),
        ([0.1, -1.0], r"budgets\[1\] must be a finite number > 0, got -1\.0"),
        ([0.1, math.nan], r"budgets\[1\] must be a finite number > 0, got nan"),
        ([0.1, 2.0], r"eps=2 is >= 1 \(the whole box\).*pass a smaller eps"),
    ],
    ids=["empty", "scalar", "negative", "nan", "beyond-the-box"],
)
def test_robustness_curve_budgets(budgets: object, match: str) -> None:
    x, y = batch()
    with untyped(), pytest.raises(ValueError, match=match):
        mr.robustness_curve(model(), (x, y), LINF, budgets, restarts=0)  # type: ignore[arg-type]


def test_robustness_curve_takes_one_threat() -> None:
    x, y = batch()
    if TYPECHECKED:  # the annotation `threat: Player` answers first
        with pytest.raises(TypeError, match="parameter 'threat'"):
            mr.robustness_curve(model(), (x, y), [LINF], [0.1])  # type: ignore[arg-type]
    with untyped(), pytest.raises(TypeError, match=r"threat must be one player.*once per threat"):
        mr.robustness_curve(model(), (x, y), [LINF], [0.1])  # type: ignore[arg-type]


def test_robustness_curve_path_must_be_writable(tmp_path: Path) -> None:
    x, y = batch()
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    path = tmp_path / "notes.txt" / "curves" / "l2"
    with pytest.raises(ValueError, match=r"cannot be written: .*notes\.txt is not a writable"):
        mr.robustness_curve(model(), (x, y), LINF, [0.1], path=path)


def test_robustness_curve_steps_is_one_int() -> None:
    x, y = batch()
    with untyped(), pytest.raises(TypeError, match=r"^steps must be an int >= 1, got dict"):
        steps: object = {"linf": 5}
        mr.robustness_curve(model(), (x, y), LINF, [0.1], steps=steps)  # type: ignore[arg-type]


def test_reports_from_foreign_json() -> None:
    with pytest.raises(ValueError, match="not a multirobust report"):
        Report.from_json('{"format": "other/1"}')
    with pytest.raises(ValueError, match="not a multirobust curve"):
        Curve.from_json('{"format": "other/1"}')


def test_report_shapes_and_reserved_names() -> None:
    y, ok = torch.tensor([0, 1]), torch.tensor([True, True])
    if TYPECHECKED:  # the annotation `dict[str, Bool[Tensor, " n"]]` answers first
        with pytest.raises(TypeError, match="parameter 'correct'"):
            Report("pgd", y, ok, {"linf": torch.tensor([True])})
    with untyped(), pytest.raises(ValueError, match=r"linf must be a bool tensor of shape \[2\]"):
        Report("pgd", y, ok, {"linf": torch.tensor([True])})
    with pytest.raises(ValueError, match="'clean' and 'All' are reserved names"):
        Report("pgd", y, ok, {"All": ok})
    with pytest.raises(ValueError, match=r"correct must have shape \[budgets, n\] = \[1, 2\]"):
        Curve("l2", "pgd", (0.5,), y, ok, torch.ones(2, 2, dtype=torch.bool))


def test_table_of_reports_of_one_suite_needs_titles() -> None:
    y, ok = torch.tensor([0, 1]), torch.tensor([True, True])
    r1, r2 = Report("pgd", y, ok, {"linf": ok}), Report("pgd", y, ok, {"linf": ~ok})
    with pytest.raises(ValueError, match=r"^reports: 2 reports of suite 'pgd' would share one"):
        mr.table([r1, r2])  # it used to show the last one only
    assert mr.table({"MAX": r1, "MSD": r2}).splitlines()[2].split() == ["linf", "100.0", "0.0"]
    assert mr.table(r for r in [r1]) == mr.table([r1])  # any iterable of reports


def test_combine_union_and_plot_need_something(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="combine needs at least one report"):
        combine()
    with pytest.raises(ValueError, match="union_accuracy needs at least one threat"):
        union_accuracy({})
    with pytest.raises(ValueError, match="no curves to plot"):
        plot_curves([], tmp_path / "curves.png")


# ---------------------------------------------------------------------------------------------
# Checkpoints, data, experiments and recipes
# ---------------------------------------------------------------------------------------------


def test_checkpoint_load_of_a_folder(tmp_path: Path) -> None:
    with pytest.raises(checkpoint.CheckpointError, match="is a folder, not a file; pass the file"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("gpu", "map_location must be a device such as 'cpu' or 'cuda:0', got 'gpu'"),
        ("cuda:99", r"map_location='cuda:99' but this machine has \d+ CUDA device\(s\); pass"),
    ],
)
def test_checkpoint_map_location(tmp_path: Path, where: str, match: str) -> None:
    path = tmp_path / "c.pt"
    checkpoint.save(path, {"w": torch.ones(2)})
    with pytest.raises(ValueError, match=match):
        checkpoint.load(path, map_location=where)


def test_checkpoint_save_needs_a_dict(tmp_path: Path) -> None:
    if TYPECHECKED:  # the annotation `state: dict[str, Any]` answers first
        with pytest.raises(TypeError, match="parameter 'state'"):
            checkpoint.save(tmp_path / "c.pt", [1, 2])  # type: ignore[arg-type]
    with untyped(), pytest.raises(TypeError, match=r"state must be a dict .*got list"):
        checkpoint.save(tmp_path / "c.pt", [1, 2])  # type: ignore[arg-type]
    assert not (tmp_path / "c.pt").exists()


def test_checkpoint_holding_a_non_dict(tmp_path: Path) -> None:
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(checkpoint.CheckpointError, match=r"list\.pt' holds a list, not a dict"):
        checkpoint.load(tmp_path / "list.pt")


@pytest.mark.parametrize(
    "call",
    [
        lambda: mrdata.fake_dataset("imagenet", 4),
        lambda: mrdata.torchvision_dataset("svhn", "data", train=True),
        lambda: experiment.paper_settings("imagenet"),
        lambda: experiment.paper_model("imagenet"),
    ],
    ids=["fake_dataset", "torchvision_dataset", "paper_settings", "paper_model"],
)
def test_unknown_dataset_names(call) -> None:
    with pytest.raises(ValueError, match=r"dataset must be one of '?mnist'?, '?cifar10'?"):
        call()


@pytest.mark.parametrize(("n", "error"), [(0, ValueError), (2.5, TypeError)])
def test_fake_dataset_size(n: object, error: type) -> None:
    with untyped(), pytest.raises(error, match="n must be an int >= 1"):
        mrdata.fake_dataset("mnist", n)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fraction", "error"),
    [(0, ValueError), (1.5, ValueError), (math.nan, ValueError), ("0.2", TypeError)],
)
def test_digits_test_fraction(fraction: object, error: type) -> None:
    with untyped(), pytest.raises(error, match=r"test_fraction must be (in|a number in) \(0, 1\)"):
        mrdata.digits(test_fraction=fraction)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "mad"}, "method must be one of max, avg, msd; got 'mad'"),
        ({"adaptive": "l3"}, "adaptive must be one of none, l1, l2; got 'l3'"),
        ({"timing": "later"}, "timing must be one of 'same-batch', 'lagged'; got 'later'"),
        ({"msd_steps": 0}, "msd_steps must be an int >= 1, got 0"),
    ],
)
def test_make_game_names_and_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        experiment.make_game([LINF, L2], **{"method": "max", **kwargs})


def test_fit_with_checkpoints_epochs(tmp_path: Path) -> None:
    x, y = batch()
    with pytest.raises(ValueError, match="epochs must be an int >= 1, got 0"):
        experiment.fit_with_checkpoints(trainer(), [(x, y)], 0, tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_init_distributed_device() -> None:
    with pytest.raises(ValueError, match="device must be 'cuda', 'cpu' or None, got 'tpu'"):
        experiment.init_distributed("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here; pass device='cpu'"):
            experiment.init_distributed("cuda")


@pytest.mark.parametrize(
    "flags",
    [["--method", "mad"], ["--adaptive", "l3"], ["--timing", "later"]],
    ids=["method", "adaptive", "timing"],
)
def test_recipe_flags_with_unknown_names(flags: list[str], capsys) -> None:
    paper = recipe("paper.py")
    with pytest.raises(SystemExit) as exit_:
        paper.parse_args("mnist", flags)
    assert exit_.value.code == 2
    assert f"argument {flags[0]}: invalid choice: '{flags[1]}'" in capsys.readouterr().err


def test_digits_recipe_unknown_method(tmp_path: Path, capsys) -> None:
    pytest.importorskip("sklearn")
    digits = recipe("digits.py")
    with pytest.raises(SystemExit) as exit_:
        digits.main(["--smoke", "--methods", "mad", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "--methods: unknown 'mad'; choose from max, avg, msd" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written, nothing trained


# ---------------------------------------------------------------------------------------------
# The synthetic SVM and diagnostics
# ---------------------------------------------------------------------------------------------


def test_svm_labels_must_be_plus_minus_one() -> None:
    x, y = svm.make_data(n=20, d=3)
    zero_one = (y > 0).to(x.dtype)
    b = svm.budgets_for("all-2mu", 0.5)
    for run in (
        lambda: svm.train(x, zero_one, b, epochs=1),
        lambda: svm.natural_weights(x, zero_one),
        lambda: svm.player_losses(torch.ones(4, dtype=x.dtype), x, zero_one, b),
    ):
        with pytest.raises(ValueError, match=r"^y must hold labels in \{-1, \+1\}.*y \* 2 - 1"):
            run()


def test_svm_inputs_must_be_finite() -> None:
    x, y = svm.make_data(n=20, d=3)
    x[3, 1] = math.nan
    with pytest.raises(ValueError, match=r"^x contains NaN or infinite values"):
        svm.natural_weights(x, y)
    with pytest.raises(ValueError, match=r"^x contains NaN or infinite values"):
        svm.train(x, y, svm.budgets_for("all-2mu", 0.5), epochs=1)


def test_svm_data_shape() -> None:
    x, y = svm.make_data(n=20, d=3)
    b = svm.budgets_for("all-2mu", 0.5)
    if TYPECHECKED:  # the annotation `x: Float[Tensor, "n d1"]` answers first
        with pytest.raises(TypeError, match="parameter 'x'"):
            svm.train(x[None], y, b, epochs=1)
    with untyped(), pytest.raises(ValueError, match=r"^x must be \[n, d \+ 1\] and y \[n\]"):
        svm.train(x[None], y, b, epochs=1)


def test_svm_solver_weights() -> None:
    x, y = svm.make_data(n=20, d=3)
    shifts, w = torch.zeros(2, 4, dtype=x.dtype), torch.ones(4, dtype=x.dtype)
    for gamma in (torch.tensor([1.0, -1.0], dtype=x.dtype), torch.ones(3, dtype=x.dtype)):
        with untyped(), pytest.raises(ValueError, match=r"^gamma must be non-negative with one"):
            svm.solve_sphere(x, y, shifts, gamma, w)


def test_svm_start_weights() -> None:
    x, y = svm.make_data(n=20, d=3)
    b = svm.budgets_for("all-2mu", 0.5)
    if TYPECHECKED:  # `w0: Float[Tensor, " d1"]`, d1 bound by x, answers first
        with pytest.raises(TypeError, match="parameter 'w0'"):
            svm.train(x, y, b, epochs=1, w0=torch.ones(3, dtype=x.dtype))
    with untyped():
        with pytest.raises(ValueError, match=r"^w0 must be \[4\] \(d \+ 1 = 4, as x\)"):
            svm.train(x, y, b, epochs=1, w0=torch.ones(3, dtype=x.dtype))
        with pytest.raises(ValueError, match=r"of x's dtype torch.float64, got torch.float32"):
            svm.train(x, y, b, epochs=1, w0=torch.ones(4))  # it failed inside torch
        with pytest.raises(ValueError, match=r"^w0 must be a finite, non-zero vector"):
            svm.train(x, y, b, epochs=1, w0=torch.zeros(4, dtype=x.dtype))


def test_svm_vectors_must_match_x() -> None:
    x, y = svm.make_data(n=20, d=3)
    b, w = svm.budgets_for("all-2mu", 0.5), torch.ones(4, dtype=x.dtype)
    gamma = torch.ones(1, dtype=x.dtype)
    calls = {
        "w": lambda: svm.player_losses(w[:3], x, y, b),
        "attack_w": lambda: svm.player_losses(w, x, y, b, attack_w=w.float()),
        "w_init": lambda: svm.solve_sphere(x, y, torch.zeros(1, 4, dtype=x.dtype), gamma, w[:3]),
        "shifts": lambda: svm.solve_sphere(x, y, torch.zeros(1, 7, dtype=x.dtype), gamma, w),
    }
    for name, call in calls.items():  # each used to fail inside torch, naming neither
        with untyped(), pytest.raises(ValueError, match=rf"^{name} must be \[(k, )?4\]"):
            call()
    with untyped():  # the annotation says float; at run time a NumPy number is taken
        x4, _ = svm.make_data(n=4, d=3, p=np.float32(0.9))
    assert x4.shape == (4, 4)


def test_trajectory_key_must_be_per_player() -> None:
    with pytest.raises(ValueError, match="key 'loss' is not a per-player field"):
        diagnostics.trajectory([{"loss": 1.0, "eps": {"linf": 0.1}}], "loss")


def test_streaks_of_one_string() -> None:
    with untyped(), pytest.raises(TypeError, match=r"got the string 'linf'; pass e\.g\."):
        diagnostics.streaks("linf")  # it counted the letters as players


def test_trajectory_unknown_key() -> None:
    with pytest.raises(ValueError, match="key 'epss' is in no record"):
        diagnostics.trajectory([{"loss": 1.0, "eps": {"linf": 0.1}}], "epss")
