"""The synthetic SVM experiment (paper Sec. 4.1, App. C.1): data, attacks, solver, runs, recipe."""

import inspect
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bad_input import TYPECHECKED, Row, refuse, table
from multirobust.paper import svm
from multirobust.paper.svm import solver
from typechecking import untyped

DT = torch.float64
ROOT = Path(__file__).resolve().parents[1]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small(n: int = 400, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    return svm.make_data(n, d, generator=gen(seed))


def unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def objective(x, y, shifts, gamma, w) -> torch.Tensor:
    """Reference objective sum_k gamma_k mean max(0, 1 - y w.x + shifts_k.w), written out."""
    margins = (y * (x @ w))[None, :] - (shifts @ w)[:, None]
    return (gamma * torch.relu(1 - margins).mean(dim=1)).sum()


# ----------------------------------------------------------------------------- data


def test_defaults_are_the_papers():
    sig = inspect.signature(svm.make_data)
    assert sig.parameters["n"].default == 100_000
    assert sig.parameters["d"].default == 1000
    assert sig.parameters["p"].default == 0.95
    assert svm.default_mu(1000) == pytest.approx(4 / math.sqrt(1000))


def test_data_statistics():
    n, d, p, mu = 20_000, 20, 0.9, 0.3
    x, y = svm.make_data(n, d, p, mu, generator=gen(1))
    assert x.shape == (n, d + 1) and y.shape == (n,) and x.dtype == DT
    assert set(y.unique().tolist()) == {-1.0, 1.0}
    assert abs(float((y == 1).to(DT).mean()) - 0.5) < 5 * 0.5 / math.sqrt(n)
    assert set(x[:, 0].unique().tolist()) == {-1.0, 1.0}
    agree = float((x[:, 0] == y).to(DT).mean())
    assert abs(agree - p) < 5 * math.sqrt(p * (1 - p) / n)
    signed = y[:, None] * x[:, 1:]  # N(mu, 1) per feature
    assert (signed.mean(dim=0) - mu).abs().max() < 5 / math.sqrt(n)
    assert abs(float(signed.std()) - 1) < 0.02
    for label in (-1.0, 1.0):
        assert float(x[y == label, 1:].mean()) == pytest.approx(label * mu, abs=0.02)


def test_data_is_reproducible_from_the_generator():
    a, b, c = small(seed=3), small(seed=3), small(seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(svm.make_data(50, 3)[0], svm.make_data(50, 3, generator=gen(0))[0])


def test_budget_settings():
    mu = 0.25
    assert svm.budgets_for("all-2mu", mu) == {"linf": 0.5, "l2": 0.5, "l1": 0.5}
    assert svm.budgets_for("l1-4mu", mu) == {"linf": 0.5, "l2": 0.5, "l1": 1.0}
    assert svm.budgets_for("l2-4mu", mu) == {"linf": 0.5, "l2": 1.0, "l1": 0.5}


# ----------------------------------------------------------------------------- attacks

weights = st.lists(
    st.floats(-10, 10, allow_nan=False).filter(lambda v: abs(v) > 1e-3), min_size=2, max_size=12
)


@given(w=weights, eps=st.floats(0.01, 5.0))
def test_perturbations_have_the_stated_norms(w, eps):
    w = torch.tensor(w, dtype=DT)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=DT)
    norms = {
        ("linf", "paper"): lambda r: r.abs().max(dim=1).values,
        ("l2", "paper"): lambda r: r.norm(dim=1),
        ("l1", "paper"): lambda r: r.abs().sum(dim=1),
        ("l1", "exact"): lambda r: r.abs().sum(dim=1),
    }
    for (player, mode), norm in norms.items():
        delta = svm.perturbation(w, y, player, eps, mode)
        assert torch.allclose(norm(delta), torch.full((3,), eps, dtype=DT), rtol=1e-12)
        # delta = -y eps s: it always lowers the margin y w.delta <= 0
        assert bool(((y * (delta @ w)) <= 1e-12).all())
    exact = svm.perturbation(w, y, "l1", eps, "exact")
    assert int((exact[0] != 0).sum()) == 1
    assert int(exact[0].abs().argmax()) == int(w.abs().argmax())


@given(w=weights, eps=st.floats(0.01, 5.0), seed=st.integers(0, 2**31))
def test_closed_forms_are_worst_case_for_a_linear_model(w, eps, seed):
    w = torch.tensor(w, dtype=DT)
    y = torch.tensor([1.0, -1.0], dtype=DT)
    g = gen(seed)
    r = torch.randn(256, w.numel(), generator=g, dtype=DT)
    random_in_ball = {
        "linf": eps * torch.rand(256, w.numel(), generator=g, dtype=DT).mul(2).sub(1),
        "l2": eps * r / r.norm(dim=1, keepdim=True),
        "l1": eps * r / r.abs().sum(dim=1, keepdim=True),
    }
    dual = {"linf": w.abs().sum(), "l2": w.norm(), "l1": w.abs().max()}
    for player, mode in (("linf", "paper"), ("l2", "paper"), ("l1", "exact")):
        closed = svm.perturbation(w, y, player, eps, mode)
        shift = y * (closed @ w)  # y w.delta
        assert torch.allclose(shift, -eps * dual[player].expand(2), rtol=1e-10)
        for label in (1.0, -1.0):
            assert bool((label * (random_in_ball[player] @ w) >= -eps * dual[player] - 1e-9).all())
    # The paper's l1 formula is weaker than (or as strong as) the exact worst case.
    paper = y * (svm.perturbation(w, y, "l1", eps, "paper") @ w)
    assert bool((paper >= -eps * dual["l1"] - 1e-12).all())


def test_exact_l1_loss_is_at_least_the_papers():
    x, y = small(500, 10)
    w = unit(torch.randn(11, generator=gen(2), dtype=DT))
    b = svm.budgets_for("l1-4mu", svm.default_mu(10))
    paper = svm.player_losses(w, x, y, b, l1_mode="paper")
    exact = svm.player_losses(w, x, y, b, l1_mode="exact")
    assert float(exact[2]) >= float(paper[2])
    assert float(exact[2]) > float(paper[2])  # strictly, for a generic w
    assert torch.equal(exact[:2], paper[:2])


@pytest.mark.parametrize("mode", svm.L1_MODES)
def test_margin_shift_losses_equal_materialised_losses(mode):
    x, y = small(300, 6)
    b = {"linf": 0.4, "l2": 0.9, "l1": 1.3}
    w = unit(torch.randn(7, generator=gen(5), dtype=DT))
    stale = unit(torch.randn(7, generator=gen(6), dtype=DT))
    for attack_w in (None, stale):
        fast = svm.player_losses(w, x, y, b, attack_w=attack_w, l1_mode=mode)
        a = w if attack_w is None else attack_w
        slow = torch.stack(
            [svm.hinge_loss(w, x, y, svm.perturbation(a, y, p, b[p], mode)) for p in svm.PLAYERS]
        )
        assert torch.allclose(fast, slow, rtol=1e-12, atol=1e-14)
    # with the attack at w itself the shift is eps times the dual norm
    margins = y * (x @ w)
    dual = {"linf": w.abs().sum(), "l2": w.norm()}
    dual["l1"] = w.abs().max() if mode == "exact" else w.square().sum() / w.abs().sum()
    for i, p in enumerate(svm.PLAYERS):
        expected = torch.relu(1 - margins + b[p] * dual[p]).mean()
        assert float(svm.player_losses(w, x, y, b, l1_mode=mode)[i]) == pytest.approx(
            float(expected), rel=1e-12
        )


# ----------------------------------------------------------------------------- gamma, flips


def test_gamma_rules():
    losses = torch.tensor([0.2, 0.9, 0.1], dtype=DT)
    assert torch.equal(svm.gamma_for(losses, "avg"), torch.full((3,), 1 / 3, dtype=DT))
    assert torch.equal(svm.gamma_for(losses, "max"), torch.tensor([0.0, 1.0, 0.0], dtype=DT))
    assert torch.equal(svm.gamma_for(losses, "msd"), svm.gamma_for(losses, "max"))
    tie = torch.tensor([0.5, 0.5, 0.1], dtype=DT)
    assert torch.equal(svm.gamma_for(tie, "max"), torch.tensor([1.0, 0.0, 0.0], dtype=DT))
    for agg in svm.AGGREGATORS:
        assert float(svm.gamma_for(losses, agg).sum()) == pytest.approx(1.0)


def test_flip_counting_by_hand():
    prev = torch.tensor([1.0, 0.5, -0.2, 0.3, 0.0, -1.0])
    new = torch.tensor([-1.0, -0.1, -0.3, 0.2, 4.0, 2.0])
    # index 0 (the robust feature) is excluded; 0 -> 4 is no flip; 0.5 -> -0.1 and -1 -> 2 are
    assert svm.count_flips(prev, new) == 2
    assert svm.count_flips(prev, -prev) == 4
    assert svm.count_flips(prev, prev) == 0


# ----------------------------------------------------------------------------- solver


def test_subgradient_matches_autograd():
    x, y = small(300, 6)
    shifts = torch.randn(3, 7, generator=gen(8), dtype=DT) * 0.3
    gamma = torch.tensor([0.5, 0.2, 0.3], dtype=DT)
    w = unit(torch.randn(7, generator=gen(9), dtype=DT)).requires_grad_(True)
    objective(x, y, shifts, gamma, w).backward()
    value, grad, _ = solver._value_and_grad(x * y[:, None], shifts, gamma, w.detach())
    assert value == pytest.approx(float(objective(x, y, shifts, gamma, w.detach())), rel=1e-12)
    assert torch.allclose(grad, w.grad, rtol=1e-10, atol=1e-12)


def test_argmin_solver_reaches_a_stationary_point_that_beats_random_unit_vectors():
    x, y = small(3000, 20, seed=11)
    b = svm.budgets_for("all-2mu", svm.default_mu(20))
    stale = unit(torch.randn(21, generator=gen(12), dtype=DT))
    shifts = torch.stack([b[p] * svm.attack_direction(stale, p) for p in svm.PLAYERS])
    gamma = torch.full((3,), 1 / 3, dtype=DT)
    start = unit(torch.ones(21, dtype=DT))
    sol = svm.solve_sphere(x, y, shifts, gamma, start)
    assert sol.converged and sol.stop_reason in ("tolerance", "stationary", "zero-loss")
    assert float(sol.w.norm()) == pytest.approx(1.0, abs=1e-12)
    f = float(objective(x, y, shifts, gamma, sol.w))
    assert sol.objective == pytest.approx(f, rel=1e-12)
    # the tangent (sub)gradient is small next to the one at the start
    ws = start.clone().requires_grad_(True)
    objective(x, y, shifts, gamma, ws).backward()
    g0 = ws.grad - (ws.grad @ start) * start
    assert sol.tangent_grad_norm < 0.02 * float(g0.norm())
    # no small move along the sphere lowers the objective noticeably
    for i in range(20):
        v = torch.randn(21, generator=gen(100 + i), dtype=DT)
        v = unit(v - (v @ sol.w) * sol.w)
        for h in (1e-3, 1e-2):
            assert float(objective(x, y, shifts, gamma, unit(sol.w + h * v))) >= f - 1e-7
    # and it beats random unit vectors
    rand = torch.randn(500, 21, generator=gen(13), dtype=DT)
    rand = rand / rand.norm(dim=1, keepdim=True)
    others = torch.stack([objective(x, y, shifts, gamma, r) for r in rand])
    assert f < float(others.min())


def test_natural_weights_fit_the_data():
    x, y = small(2000, 30)
    sol = svm.natural_weights(x, y)
    assert sol.converged and float(sol.w.norm()) == pytest.approx(1.0, abs=1e-12)
    assert sol.objective == pytest.approx(float(svm.hinge_loss(sol.w, x, y)), abs=1e-12)
    assert sol.objective <= float(svm.hinge_loss(unit(x.mul(y[:, None]).mean(0)), x, y))
    assert float((torch.sign(x @ sol.w) == y).to(DT).mean()) > 0.99


# ----------------------------------------------------------------------------- training


def test_training_records_follow_the_convention():
    x, y = small(500, 12)
    b = svm.budgets_for("all-2mu", svm.default_mu(12))
    run = svm.train(x, y, b, aggregator="max", epochs=3)
    assert [r.epoch for r in run.records] == [0, 1, 2, 3]
    assert run.records[0].gamma is None and run.records[0].flips is None
    for prev, rec in zip(run.records, run.records[1:], strict=False):
        # MAX: all the weight of epoch t on the player that dominated w_{t-1}
        assert rec.gamma == {p: float(p == prev.dominant) for p in svm.PLAYERS}
        assert rec.dominant == max(rec.losses, key=rec.losses.get)
        assert rec.converged is True
    # flips and losses agree with recomputation from the final w
    w = run.w
    assert float(w.norm()) == pytest.approx(1.0, abs=1e-12)
    last = svm.player_losses(w, x, y, b)
    assert [run.records[-1].losses[p] for p in svm.PLAYERS] == pytest.approx(last.tolist())
    data = run.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["l1_mode"] == "paper" and data["setting"] == "argmin"
    assert "convention" in data and "summary" in data and "w" not in data


def test_msd_is_max():
    x, y = small(300, 6)
    b = svm.budgets_for("all-2mu", svm.default_mu(6))
    a = svm.train(x, y, b, aggregator="max", epochs=2)
    m = svm.train(x, y, b, aggregator="msd", epochs=2)
    assert torch.equal(a.w, m.w)


def test_gradient_step_is_one_projected_subgradient_step():
    x, y = small(400, 8)
    b = {"linf": 0.3, "l2": 0.5, "l1": 0.7}
    w0 = svm.natural_weights(x, y).w
    lr = 0.05
    run = svm.train(x, y, b, aggregator="avg", setting="gradient-step", epochs=1, lr=lr, w0=w0)
    shifts = torch.stack([b[p] * svm.attack_direction(w0, p) for p in svm.PLAYERS])
    w = w0.clone().requires_grad_(True)
    objective(x, y, shifts, torch.full((3,), 1 / 3, dtype=DT), w).backward()
    expected = unit(w0 - lr * w.grad)
    assert torch.allclose(run.w, expected, rtol=1e-12, atol=1e-14)
    assert run.lr == lr and run.records[1].converged is None


def test_max_flips_almost_every_nonrobust_weight_small():
    """Theorem 3 at a small size: under MAX with l_inf dominating, the non-robust weights flip."""
    d = 50
    x, y = svm.make_data(2000, d, generator=gen(0))
    run = svm.train(x, y, svm.budgets_for("all-2mu", svm.default_mu(d)), epochs=3)
    assert all(r.dominant == "linf" for r in run.records)
    assert all(r.flips >= 0.9 * d for r in run.records[1:])


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: svm.make_data(10, 0), "d"),
        (lambda: svm.make_data(0, 3), "n"),
        (lambda: svm.make_data(10, 3, p=0.0), "p"),
        (lambda: svm.make_data(10, 3, p=1.0), "p"),
        (lambda: svm.make_data(10, 3, p=1.5), "p"),
        (lambda: svm.make_data(10, 3, mu=-1.0), "mu"),
        (lambda: svm.default_mu(0), "d"),
        (lambda: svm.budgets_for("l3-4mu", 0.1), "setting"),
        (lambda: svm.budgets_for("all-2mu", 0.0), "mu"),
        (lambda: svm.attack_direction(torch.zeros(3), "linf"), "w"),
        (lambda: svm.attack_direction(torch.ones(3), "l0"), "player"),
        (lambda: svm.attack_direction(torch.ones(3), "l1", "approx"), "l1_mode"),
        (lambda: svm.perturbation(torch.ones(3), torch.ones(2), "l2", 0.0), "eps"),
        (lambda: svm.gamma_for(torch.ones(3), "min"), "aggregator"),
    ],
)
def test_bad_input_names_the_argument(call, name):
    with pytest.raises(ValueError, match=f"^{re.escape(name)}"):
        call()


def test_flip_counting_rejects_mismatched_shapes():
    # ValueError from the function; under the test run's jaxtyping checker a TypeCheckError first
    with pytest.raises((TypeError, ValueError), match=r"w_new|w_prev"):
        svm.count_flips(torch.ones(3), torch.ones(4))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"aggregator": "mean"}, "aggregator"),
        ({"setting": "sgd"}, "setting"),
        ({"l1_mode": "sparse"}, "l1_mode"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -0.1}, "lr"),
        ({"tol": 0.0}, "tol"),
        ({"max_iter": 0}, "max_iter"),
        ({"budgets": {"linf": 0.1, "l2": 0.1}}, "budgets"),
        ({"budgets": {"linf": 0.1, "l2": 0.0, "l1": 0.1}}, "budgets"),
        ({"budgets": {"linf": -1.0, "l2": 0.1, "l1": 0.1}}, "budgets"),
    ],
)
def test_train_rejects_bad_settings(kwargs, name):
    x, y = small(20, 3)
    args = {"budgets": svm.budgets_for("all-2mu", 0.5), **kwargs}
    budgets = args.pop("budgets")
    with pytest.raises(ValueError, match=f"^{re.escape(name)}"):
        svm.train(x, y, budgets, **args)


# ----------------------------------------------------------------------------- recipe


def test_recipe_smoke_run_writes_its_files(tmp_path):
    out = tmp_path / "svm"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "recipes" / "synthetic_svm.py"), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "settings:" in proc.stdout and "loss_linf" in proc.stdout and "flips" in proc.stdout
    assert "The paper's claims against these runs" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["smoke"] is True and config["l1_mode"] == "paper"
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == 12  # 2 settings x 3 budget settings x (MAX, AVG)
    assert {r["l1_mode"] for r in results["runs"]} == {"paper"}
    assert results["claims"] and all("reproduced" in c for c in results["claims"])
    pngs = sorted(p.name for p in out.glob("fig_*.png"))
    assert len(pngs) == 6 and all((out / p).stat().st_size > 1000 for p in pngs)


def test_recipe_imports_only_the_public_svm_module():
    source = (ROOT / "recipes" / "synthetic_svm.py").read_text()
    imports = re.findall(r"^(?:from|import) multirobust\S*(?: import .*)?$", source, flags=re.M)
    assert imports[0] == "from multirobust.paper import svm"
    assert "svm._" not in source and all("svm" not in i for i in imports[1:])


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("multirobust.svm", "multirobust.paper.svm"),
        ("multirobust.experiment", "multirobust.paper.experiment"),
    ],
)
def test_old_module_names_say_where_the_modules_went(old, new):
    proc = subprocess.run(
        [sys.executable, "-c", f"import {old}"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert f"ImportError: {old} moved to {new}" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_paper_size_max_flips_almost_every_weight_every_epoch():
    """Paper App. C.1 / Fig. 3a at full size: n = 100000, d = 1000, all budgets 2 mu, argmin."""
    d = 1000
    x, y = svm.make_data(generator=gen(0))
    run = svm.train(x, y, svm.budgets_for("all-2mu", svm.default_mu(d)), epochs=4)
    assert all(r.dominant == "linf" for r in run.records)
    assert all(r.converged for r in run.records[1:])
    assert all(r.flips >= 0.9 * d for r in run.records[2:])


# ----------------------------------------------------------------------------- bad input, as rows


def data(n: int = 20, d: int = 3):
    return svm.make_data(n=n, d=d)


def zero_one():
    x, y = data()
    return x, (y > 0).to(x.dtype)


def with_nan():
    x, y = data()
    x[3, 1] = math.nan
    return x, y


B = svm.budgets_for("all-2mu", 0.5)
W = torch.ones(4, dtype=DT)
GAMMA1 = torch.ones(1, dtype=DT)
PM1 = r"^y must hold labels in \{-1, \+1\}.*y \* 2 - 1"
NAN = r"^x contains NaN or infinite values"

BAD_INPUT = [
    Row("train-labels-0-1", "data", lambda: svm.train(*zero_one(), B, epochs=1), ValueError, PM1),
    Row(
        "natural_weights-labels-0-1",
        "data",
        lambda: svm.natural_weights(*zero_one()),
        ValueError,
        PM1,
    ),
    Row(
        "player_losses-labels-0-1",
        "data",
        lambda: svm.player_losses(W, *zero_one(), B),
        ValueError,
        PM1,
    ),
    Row("natural_weights-nan", "data", lambda: svm.natural_weights(*with_nan()), ValueError, NAN),
    Row("train-nan", "data", lambda: svm.train(*with_nan(), B, epochs=1), ValueError, NAN),
    Row(
        "train-x-3d",
        "type" if TYPECHECKED else "data",
        lambda: svm.train(data()[0][None], data()[1], B, epochs=1),
        TypeError if TYPECHECKED else ValueError,
        "parameter 'x'" if TYPECHECKED else r"^x must be \[n, d \+ 1\] and y \[n\]",
    ),
    Row(
        "train-x-3d-untyped",
        "data",
        lambda: svm.train(data()[0][None], data()[1], B, epochs=1),
        ValueError,
        r"^x must be \[n, d \+ 1\] and y \[n\]",
        untyped=True,
    ),
    *(
        Row(
            f"solve_sphere-gamma-{i}",
            "value",
            lambda g=gamma: svm.solve_sphere(*data(), torch.zeros(2, 4, dtype=DT), g, W),
            ValueError,
            r"^gamma must be non-negative with one",
            untyped=True,
        )
        for i, gamma in enumerate([torch.tensor([1.0, -1.0], dtype=DT), torch.ones(3, dtype=DT)])
    ),
    Row(
        "train-w0-of-3",
        "type" if TYPECHECKED else "value",
        lambda: svm.train(*data(), B, epochs=1, w0=torch.ones(3, dtype=DT)),
        TypeError if TYPECHECKED else ValueError,
        "parameter 'w0'" if TYPECHECKED else r"^w0 must be \[4\] \(d \+ 1 = 4, as x\)",
    ),
    Row(
        "train-w0-of-3-untyped",
        "value",
        lambda: svm.train(*data(), B, epochs=1, w0=torch.ones(3, dtype=DT)),
        ValueError,
        r"^w0 must be \[4\] \(d \+ 1 = 4, as x\)",
        untyped=True,
    ),
    Row(
        "train-w0-float32",
        "type",
        lambda: svm.train(*data(), B, epochs=1, w0=torch.ones(4)),
        ValueError,
        r"of x's dtype torch.float64, got torch.float32",
        untyped=True,
    ),
    Row(
        "train-w0-zero",
        "value",
        lambda: svm.train(*data(), B, epochs=1, w0=torch.zeros(4, dtype=DT)),
        ValueError,
        r"^w0 must be a finite, non-zero vector",
        untyped=True,
    ),
    Row(
        "player_losses-w-of-3",
        "value",
        lambda: svm.player_losses(W[:3], *data(), B),
        ValueError,
        r"^w must be \[(k, )?4\]",
        untyped=True,
    ),
    Row(
        "player_losses-attack_w-float32",
        "value",
        lambda: svm.player_losses(W, *data(), B, attack_w=W.float()),
        ValueError,
        r"^attack_w must be \[(k, )?4\]",
        untyped=True,
    ),
    Row(
        "solve_sphere-w_init-of-3",
        "value",
        lambda: svm.solve_sphere(*data(), torch.zeros(1, 4, dtype=DT), GAMMA1, W[:3]),
        ValueError,
        r"^w_init must be \[(k, )?4\]",
        untyped=True,
    ),
    Row(
        "solve_sphere-shifts-of-7",
        "value",
        lambda: svm.solve_sphere(*data(), torch.zeros(1, 7, dtype=DT), GAMMA1, W),
        ValueError,
        r"^shifts must be \[(k, )?4\]",
        untyped=True,
    ),
]


@table(BAD_INPUT)
def test_bad_input_rows(row: Row, tmp_path) -> None:
    refuse(row, tmp_path)


def test_make_data_takes_a_numpy_probability() -> None:
    with untyped():  # the annotation says float; at run time a NumPy number is taken
        x4, _ = svm.make_data(n=4, d=3, p=np.float32(0.9))
    assert x4.shape == (4, 4)
