"""evaluate(): union accuracy, the PGD suite against APGD, the AutoAttack adapter, reports, curves,
the masking checks and bad input."""

import json
import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import multirobust as mr
from multirobust.evaluation import (
    SUITES,
    Curve,
    L1Eval,
    Report,
    RobustnessWarning,
    combine,
    evaluate,
    l1_eval,
    paper_eval_steps,
    plot_curves,
    robustness_curve,
    table,
    union_accuracy,
)
from test_evaluation_masking import train_digits

# Budgets for 8x8 digits in [0, 1] where the clean-trained CNN below keeps 15-55 % robust.
LINF, L2, L1 = 0.1, 0.5, 2.0


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A clean-trained DigitsCNN (5 epochs of Adam, seeded; ~96 % test accuracy) and 200 test
    digits."""
    return train_digits(200)


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RobustnessWarning)
        return fn(*args, **kwargs)


def toy_data(n: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


SMALL = (
    mr.linf(eps=0.05, alpha=0.02, steps=3),
    mr.l2(eps=0.3, alpha=0.1, steps=3),
    mr.l1(eps=1.0, alpha=0.2, steps=3),
)


# ------------------------------------------------------------------------------------------------
# Union accuracy and reports


def test_union_is_the_per_example_and_of_the_threats() -> None:
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    clean = torch.tensor([True, True, True, True, True, False])
    linf = torch.tensor([True, True, False, True, False, False])
    l2 = torch.tensor([True, False, True, True, False, False])
    l1 = torch.tensor([True, True, True, False, False, False])
    r = Report("pgd", y, clean, {"linf": linf, "l2": l2, "l1": l1})
    assert torch.equal(r.all_correct, torch.tensor([True, False, False, False, False, False]))
    assert r.union == 1 / 6 == union_accuracy([linf, l2, l1])
    assert r.accuracy == {"clean": 5 / 6, "linf": 3 / 6, "l2": 3 / 6, "l1": 3 / 6, "All": 1 / 6}
    # The union is never above any threat's accuracy, which is never above clean.
    assert r.union <= min(r.robust.values()) <= max(r.robust.values()) <= r.clean


def test_combining_reports_ands_each_threat_and_the_union() -> None:
    y, clean = torch.tensor([0, 1, 2]), torch.tensor([True, True, True])
    pgd_ = Report("pgd", y, clean, {"linf": torch.tensor([True, True, False])})
    aa = Report("apgd", y, clean, {"linf": torch.tensor([True, False, True]), "l2": clean})
    both = combine(pgd_, aa)
    assert both == pgd_ & aa
    assert both.suite == "pgd+apgd"
    assert torch.equal(both.correct["linf"], torch.tensor([True, False, False]))
    assert both.robust == {"linf": 1 / 3, "l2": 1.0}
    assert both.union == 1 / 3
    other = Report("pgd", torch.tensor([0, 1, 9]), clean, {"linf": clean})
    with pytest.raises(ValueError, match="same examples"):
        combine(pgd_, other)


def test_report_json_round_trip_and_table(digits_model, tmp_path) -> None:
    model, x, y = digits_model
    r = quiet(evaluate, model, (x[:24], y[:24]), SMALL, restarts=1)
    assert Report.from_json(r.to_json()) == r
    r.save(tmp_path / "r.json")
    assert Report.load(tmp_path / "r.json") == r
    assert Report.from_json(tmp_path / "r.json") == r
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["union"] == r.union and d["robust"] == r.robust and len(d["correct"]["l1"]) == 24
    text = str(r)
    lines = text.splitlines()
    assert lines[0].split() == ["pgd"]
    assert [line.split()[0] for line in lines[1:6]] == ["clean", "linf", "l2", "l1", "All"]
    assert f"{100 * r.union:.1f}" in lines[5]
    two = table({"A": r, "B": r}).splitlines()
    assert two[0].split() == ["A", "B"] and len(two) == 6


# ------------------------------------------------------------------------------------------------
# What the suites measure


class Constant(nn.Module):
    """Always predicts class 3, whatever the input."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))
        with torch.no_grad():
            self.bias[3] = 5.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(x.shape[0], 10) + 0 * x.flatten(1).sum(1, keepdim=True)


def test_a_constant_classifier_keeps_its_clean_accuracy_under_every_threat() -> None:
    x, y = toy_data(40)
    y[:10] = 3
    big = (mr.linf(eps=0.5, steps=5), mr.l2(eps=4.0, steps=5), mr.l1(eps=30.0, alpha=1.0, steps=5))
    r = quiet(evaluate, Constant(), (x, y), big, restarts=2)
    assert any("exactly zero" in w for w in r.warnings)
    expected = float((y == 3).float().mean())
    assert r.clean == pytest.approx(expected)
    assert r.robust == pytest.approx({"linf": expected, "l2": expected, "l1": expected})
    assert r.union == pytest.approx(expected)


def test_an_undefended_model_is_broken_at_a_large_budget(digits_model) -> None:
    model, x, y = digits_model
    threats = (mr.linf(eps=0.3, alpha=0.05, steps=10), mr.l2(eps=2.5, alpha=0.5, steps=10))
    r = quiet(evaluate, model, (x[:100], y[:100]), threats, restarts=0)
    assert r.clean > 0.9
    assert r.robust["linf"] <= 0.02 and r.robust["l2"] <= 0.02


def _apgd_ce(model, x, y, norm: str, eps: float) -> float:
    """AutoAttack's APGD-CE with the standard version's settings for ``norm``."""
    from pyautoattack.autopgd_base import APGDAttack

    l1 = norm == "L1"
    attack = APGDAttack(
        model, n_iter=100, norm=norm, eps=eps, n_restarts=5 if l1 else 1, seed=0, device="cpu"
    )
    attack.use_largereps = l1
    with torch.random.fork_rng():
        x_adv = attack.perturb(x, y)
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def test_strength_against_apgd(digits_model) -> None:
    """Our PGD suite is within 2 points of (or below) APGD-CE for l_inf and l_2; the paper's sparse
    l_1 PGD is far above APGD-L1, and l1_eval closes the gap to within 2 points.

    Measured (200 test digits, 3 restarts): l_inf 0.1: PGD 49.0 vs APGD-CE 50.5; l_2 0.5: 52.5
    vs 52.0; l_1 2.0: sparse PGD 32.0, l1_eval 14.0, APGD-L1 13.0 (docs/evaluation.md). Counts
    of examples are compared, so "2 points" is exactly 4 of the 200 images.
    """
    model, x, y = digits_model
    threats = (
        mr.linf(eps=LINF, alpha=LINF / 10, steps=50),
        mr.l2(eps=L2, alpha=L2 / 10, steps=50),
        mr.l1(eps=L1, alpha=L1 / 10, steps=50),
        l1_eval(eps=L1, name="l1-eval"),
    )
    r = quiet(evaluate, model, (x, y), threats, restarts=3)
    apgd = {
        "linf": _apgd_ce(model, x, y, "Linf", LINF),
        "l2": _apgd_ce(model, x, y, "L2", L2),
        "l1": _apgd_ce(model, x, y, "L1", L1),
    }
    print(f"\nPGD {r.robust}\nAPGD-CE {apgd}")
    assert 0.2 < apgd["linf"] < 0.8 and 0.2 < apgd["l2"] < 0.8 and 0.05 < apgd["l1"] < 0.5
    ours = {k: round(200 * v) for k, v in r.robust.items()}
    ref = {k: round(200 * v) for k, v in apgd.items()}
    assert ours["linf"] <= ref["linf"] + 4
    assert ours["l2"] <= ref["l2"] + 4
    assert ours["l1"] - ref["l1"] > 20  # the gap SPARSE_L1_NOTE reports
    assert ours["l1-eval"] <= ref["l1"] + 4


def test_pgd_strong_swaps_the_sparse_l1_player_and_drops_the_note(digits_model) -> None:
    model, x, y = digits_model
    l1 = mr.l1(eps=L1, alpha=0.2, steps=5)
    weak = quiet(evaluate, model, (x[:40], y[:40]), [l1], restarts=0, checks=False)
    assert any("sparse l1 PGD" in w for w in weak.warnings)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)
        strong = evaluate(model, (x[:40], y[:40]), [l1], "pgd-strong", restarts=0, steps=20)
    assert strong.warnings == ()
    assert strong.settings["threats"]["l1"]["kind"] == "L1Eval"
    assert strong.robust["l1"] <= weak.robust["l1"]


def test_l1_eval_shrinks_its_sparsity_and_stays_feasible() -> None:
    p = l1_eval(eps=2.0)
    assert isinstance(p, L1Eval) and p.alpha == 0.5 and p(eps=4.0).alpha == 1.0
    assert p(eps=4.0, alpha=0.3).alpha == 0.3
    x = torch.rand(3, 1, 8, 8)
    zero = torch.zeros_like(x)
    assert p.sparsity(zero).tolist() == [32, 32, 32]  # half of the 64 coordinates at the start
    sparse = zero.clone()
    sparse.view(3, -1)[:, :6] = 0.1
    assert p.sparsity(sparse).tolist() == [4, 4, 4]  # ceil(6 / 1.5)
    g = torch.randn_like(x)
    delta = p.project(x, p.ascend(x, sparse, g, 5.0), 2.0)
    assert bool((p.size(delta) <= 2.0 + 1e-4).all())
    assert bool(((x + delta) >= -1e-6).all() and ((x + delta) <= 1 + 1e-6).all())
    with pytest.raises(ValueError, match="share"):
        l1_eval(share=0.0)


def test_paper_eval_steps() -> None:
    assert paper_eval_steps("mnist") == {"linf": 100, "l2": 200, "l1": 100}
    assert paper_eval_steps("cifar10") == {"linf": 100, "l2": 500, "l1": 100}
    with pytest.raises(ValueError, match="'mnist'"):
        paper_eval_steps("imagenet")


def test_steps_per_threat_and_restarts_are_recorded() -> None:
    x, y = toy_data(8)
    r = quiet(evaluate, linear(), (x, y), SMALL, restarts=2, steps={"l2": 4})
    t = r.settings["threats"]
    assert (t["linf"]["steps"], t["l2"]["steps"], t["l1"]["steps"]) == (3, 4, 3)
    assert t["linf"]["restarts"] == 2 and t["l2"]["eps"] == 0.3


# ------------------------------------------------------------------------------------------------
# AutoAttack


def test_apgd_suite_equals_pyautoattack_called_directly(digits_model) -> None:
    from pyautoattack import AutoAttack

    model, x, y = digits_model
    x, y = x[:20], y[:20]
    r = quiet(evaluate, model, (x, y), [mr.linf(eps=LINF)], "apgd", seed=0)
    direct = AutoAttack(model, norm="Linf", eps=LINF, version="standard", device="cpu", seed=0)
    direct.attacks_to_run = ["apgd-ce", "apgd-t"]
    direct.verbose = False
    _, y_adv = direct.run_standard_evaluation(x, y, batch_size=20)
    assert torch.equal(r.correct["linf"], (y_adv == y).cpu())
    assert r.settings["threats"]["linf"]["attack"] == "AutoAttack Linf apgd-ce + apgd-t"


@pytest.mark.slow
def test_autoattack_suite_equals_pyautoattack_called_directly(digits_model) -> None:
    from pyautoattack import AutoAttack

    model, x, y = digits_model
    x, y = x[:12], y[:12]
    r = quiet(evaluate, model, (x, y), [mr.l2(eps=L2)], "autoattack", seed=1)
    direct = AutoAttack(model, norm="L2", eps=L2, version="standard", device="cpu", seed=1)
    direct.verbose = False
    _, y_adv = direct.run_standard_evaluation(x, y, batch_size=12)
    assert torch.equal(r.correct["l2"], (y_adv == y).cpu())


class Rotate:
    """A user-defined player (a stand-in: it only needs to look like a Player)."""

    name, eps, alpha, steps, restarts = "rot", 0.1, 0.01, 2, 0

    def check_input(self, x):
        pass

    def zero(self, x):
        return torch.zeros_like(x)

    def draw(self, x, generator):
        return None

    def init(self, x, eps, generator):
        return torch.zeros_like(x)

    def ascend(self, x, delta, grad, alpha, generator):
        return delta + alpha * grad.sign()

    def project(self, x, delta, eps):
        return delta.clamp(-eps, eps)

    def size(self, delta):
        return delta.flatten(1).abs().amax(1)

    def apply(self, x, delta):
        return (x + delta).clamp(0, 1)


def test_autoattack_suites_reject_user_defined_players_and_pgd_runs_them() -> None:
    x, y = toy_data(8)
    for suite in ("apgd", "autoattack"):
        with pytest.raises(TypeError, match="user-defined players with suite='pgd'"):
            evaluate(linear(), (x, y), [Rotate()], suite)
    r = quiet(evaluate, linear(), (x, y), [Rotate()], restarts=0)
    assert set(r.robust) == {"rot"}


class Unhashable(Rotate):
    """A plain (not frozen) dataclass player cannot be hashed either."""

    __hash__ = None  # type: ignore[assignment]


def test_players_need_not_be_hashable() -> None:
    x, y = toy_data(8)
    r = quiet(evaluate, linear(), (x, y), [Unhashable()], restarts=1)
    c = quiet(robustness_curve, linear(), (x, y), Unhashable(), [0.05, 0.1], restarts=1)
    assert set(r.robust) == {"rot"} and c.budgets == (0.05, 0.1)


def test_missing_pyautoattack_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyautoattack", None)
    x, y = toy_data(4)
    with pytest.raises(ImportError, match=r'pip install "multirobust\[eval\]"'):
        evaluate(linear(), (x, y), [mr.linf(eps=0.1)], "autoattack")


# ------------------------------------------------------------------------------------------------
# Curves


def test_robustness_curve_writes_json_and_png(digits_model, tmp_path) -> None:
    model, x, y = digits_model
    threat = mr.linf(eps=LINF, alpha=LINF / 5, steps=10)
    c = quiet(
        robustness_curve,
        model,
        (x[:40], y[:40]),
        threat,
        [0.2, 0.05, 0.1],
        restarts=0,
        path=tmp_path / "curves" / "linf",  # a folder that does not exist yet
    )
    assert c.budgets == (0.05, 0.1, 0.2)
    assert c.clean_accuracy >= c.accuracy[0] >= c.accuracy[1] >= c.accuracy[2]
    written = tmp_path / "curves" / "linf.json"
    assert Curve.from_json(written) == c
    assert json.loads(written.read_text())["accuracy"] == list(c.accuracy)
    png = (tmp_path / "curves" / "linf.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    two = plot_curves({"A": c, "B": [c]}, tmp_path / "both.png")
    assert two.stat().st_size > 1000
    assert "0.1" in str(c)


# ------------------------------------------------------------------------------------------------
# Masking checks


class Noisy(nn.Module):
    """Adds fresh noise to its logits in every forward pass, in eval mode too."""

    def __init__(self) -> None:
        super().__init__()
        self.net = linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        return out + 0.1 * torch.randn_like(out)


class Rounded(nn.Module):
    """Quantises its input: the input gradient is zero everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.net = linear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 4) / 4)


class Bumpy(nn.Module):
    """Class 0 wins near x = 0.5, with a local loss maximum at mean(x) = 0.51 that traps small
    PGD steps, while one step of size 0.1 lands where class 1 wins (a masked gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1).mean(1) - 0.5
        margin = 2 * (1 - 10 * v + 20 * F.relu(v - 0.01) - 100 * F.relu(v - 0.05))
        return torch.stack([self.scale * margin, torch.zeros_like(margin)], dim=1)


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (nn.Sequential(linear(), nn.Softmax(dim=1)), "probabilities"),
        (Noisy(), "not deterministic"),
        (Rounded(), "exactly zero"),
    ],
    ids=["softmax", "random", "zero-gradient"],
)
def test_masking_checks_warn_and_go_in_the_report(model, match) -> None:
    x, y = toy_data(16)
    with pytest.warns(RobustnessWarning, match=match):
        r = evaluate(model, (x, y), [mr.linf(eps=0.1, steps=2)], restarts=0)
    assert any(match in w for w in r.warnings)


def test_a_single_step_beating_pgd_is_flagged() -> None:
    x, y = torch.full((20, 1, 8, 8), 0.5), torch.zeros(20, dtype=torch.long)
    with pytest.warns(RobustnessWarning, match="weaker attack beat a stronger one") as seen:
        r = evaluate(Bumpy(), (x, y), [mr.linf(eps=0.1, alpha=0.01, steps=20)], restarts=1)
    assert len(seen) == 1 and len(r.warnings) == 1
    assert r.robust["linf"] == 1.0  # PGD is stuck; the warning says so


def test_a_healthy_model_raises_no_masking_warning(digits_model) -> None:
    model, x, y = digits_model
    with warnings.catch_warnings():
        warnings.simplefilter("error", RobustnessWarning)
        r = evaluate(model, (x[:50], y[:50]), [mr.linf(eps=LINF, alpha=0.02, steps=10)])
    assert r.warnings == ()


# ------------------------------------------------------------------------------------------------
# Data, device, memory, the model left as found


class Recorder(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.largest = net, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.largest = max(self.largest, x.shape[0])
        return self.net(x)


def test_batches_are_attacked_one_at_a_time_and_loaders_match_pairs() -> None:
    x, y = toy_data(50)
    rec = Recorder(linear())
    threats = (mr.linf(eps=0.05, alpha=0.02, steps=3),)  # no restarts: deterministic
    loader = DataLoader(TensorDataset(x, y), batch_size=32)
    a = quiet(evaluate, rec, loader, threats, restarts=0, batch_size=8, n=45)
    assert rec.largest <= 8
    b = quiet(evaluate, rec, (x, y), threats, restarts=0, batch_size=16, n=45)
    assert a.n == b.n == 45 and torch.equal(a.labels, y[:45])
    assert torch.equal(a.correct["linf"], b.correct["linf"])


def test_the_model_is_left_exactly_as_found() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(144, 10),
    ).train()
    model[1].eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [m.training for m in model.modules()]
    x, y = toy_data(12)
    rng = torch.get_rng_state()
    quiet(evaluate, model, (x, y), SMALL, restarts=1)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert torch.equal(rng, torch.get_rng_state())  # a seeded run draws from its own generators


def test_progress_bar(capsys) -> None:
    x, y = toy_data(8)
    quiet(evaluate, linear(), (x, y), [mr.linf(eps=0.1, steps=1)], restarts=0, progress=True)
    assert "ex" in capsys.readouterr().err


@pytest.mark.gpu
def test_data_on_the_cpu_is_moved_to_the_models_gpu() -> None:
    x, y = toy_data(8)
    r = quiet(evaluate, linear().cuda(), (x, y), SMALL, restarts=1)
    assert r.n == 8


# ------------------------------------------------------------------------------------------------
# Bad input, before any attack


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"threats": []}, ValueError, "at least one threat"),
        ({"n": 17}, ValueError, "n=17 is larger than the data, which has 16"),
        ({"threats": [mr.linf(eps=1.0)]}, ValueError, r"eps=1 is >= 1"),
        ({"threats": [mr.l2(eps=8.0)]}, ValueError, r"sqrt\(d\) = 8"),
        ({"threats": [mr.l1(eps=64.0, alpha=1.0)]}, ValueError, "d = 64"),
        ({"suite": "fgsm"}, ValueError, "'pgd', 'pgd-strong', 'apgd', 'autoattack'"),
        ({"threats": [mr.linf, mr.linf]}, ValueError, "distinct names"),
        ({"steps": {"l0": 3}}, ValueError, "unknown threats"),
        ({"restarts": -1}, ValueError, "restarts"),
    ],
)
def test_bad_arguments_fail_before_any_attack(kwargs, error, match) -> None:
    x, y = toy_data(16)
    rec = Recorder(linear())
    with pytest.raises(error, match=match):
        evaluate(rec, (x, y), **{"threats": [mr.linf(eps=0.1)], **kwargs})
    assert rec.largest <= 16  # at most the checks' clean forward passes ran


@pytest.mark.parametrize(
    "data",
    [torch.rand(4, 1, 8, 8), [torch.rand(4, 1, 8, 8)], "data.pt", {"x": 1, "y": 2}],
    ids=["tensor", "one-tensor", "path", "dict"],
)
def test_data_must_be_a_loader_or_a_pair(data) -> None:
    with pytest.raises(TypeError, match="DataLoader"):
        evaluate(linear(), data, [mr.linf(eps=0.1)])


def test_n_beyond_a_loader_and_mismatched_pairs() -> None:
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="n=20 is larger than the data, which has 16"):
        evaluate(linear(), DataLoader(TensorDataset(x, y), batch_size=4), SMALL, n=20)
    with pytest.raises(ValueError, match="as many inputs as labels"):
        evaluate(linear(), (x, y[:3]), SMALL)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(linear(), (x * 3, y), SMALL)


def test_suites_constant() -> None:
    assert SUITES == ("pgd", "pgd-strong", "apgd", "autoattack")


def test_same_seed_gives_identical_reports() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(12, 1, 4, 4), torch.randint(0, 3, (12,))
    threats = (mr.linf(eps=0.05, steps=3), mr.l1(eps=1.0, alpha=0.2, steps=3, k_min=2, k_max=4))
    runs = [mr.evaluate(model, (x, y), threats, restarts=2, seed=5, checks=False) for _ in range(2)]
    assert runs[0] == runs[1]


def test_each_warning_is_said_once(digits_model, capsys) -> None:
    """Before: the sparse-l1 note was printed twice per evaluation (as a warning and again in
    the printed report) and quoted three measurements; now it is one short line, once."""
    model, x, y = digits_model
    with pytest.warns(RobustnessWarning) as caught:
        report = evaluate(model, (x[:40], y[:40]), [mr.l1(eps=L1, alpha=0.2, steps=3)], restarts=0)
    print(report)
    notes = [w for w in caught if "sparse l1 PGD" in str(w.message)]
    assert len(notes) == 1 and len(str(notes[0].message)) < 160
    printed = capsys.readouterr().out
    assert "sparse l1 PGD" not in printed and "report.warnings" in printed


def test_a_half_written_report_names_its_file(tmp_path) -> None:
    """Before: a bare JSONDecodeError without the file's name; the same for History's JSONL."""
    x, y = torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 2, 0])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    report = quiet(evaluate, model, (x, y), [mr.linf(eps=0.1, steps=1)], restarts=0, checks=False)
    path = tmp_path / "report.json"
    path.write_text(report.to_json()[:-40])
    with pytest.raises(ValueError, match=rf"{path} is not complete JSON .*delete it"):
        mr.Report.load(path)
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"loss": 1.0}\n{"loss": 2.')
    with pytest.raises(ValueError, match=rf"{log}: line 2 is not a JSON record"):
        mr.History.from_jsonl(log)
