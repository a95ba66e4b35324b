"""The batched projections against independent float64 references (spec §1, l_1 player)."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import multirobust as mr
from multirobust.projections import clip_to_box, project_l1_ball, project_l1_ball_box

DTYPES = (torch.float32, torch.float64)


def tol(dtype: torch.dtype) -> float:
    return 1e-5 if dtype == torch.float32 else 1e-11


# ---------------------------------------------------------------------------------------------
# Independent references, one example at a time, in float64 (no sorting, no torch)
# ---------------------------------------------------------------------------------------------


def bisect(mass, hi: float, target: float) -> float:
    """The smallest t in [0, hi] with mass(t) <= target, for a non-increasing ``mass``."""
    lo = 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if mass(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


def reference_l1_ball(v: np.ndarray, eps: float) -> np.ndarray:
    """argmin ||w - v||_2 over ||w||_1 <= eps: soft-thresholding at the theta found by bisection."""
    a = np.abs(v)
    if a.sum() <= eps:
        return v.copy()
    theta = bisect(lambda t: np.maximum(a - t, 0).sum(), float(a.max()), eps)
    return np.sign(v) * np.maximum(a - theta, 0)


def reference_l1_ball_box(v: np.ndarray, x: np.ndarray, eps: float) -> np.ndarray:
    """argmin ||d - v||_2 over ||d||_1 <= eps, 0 <= x + d <= 1 (KKT: clipped soft-threshold)."""

    def d(t: float) -> np.ndarray:
        return np.clip(np.sign(v) * np.maximum(np.abs(v) - t, 0), -x, 1 - x)

    if np.abs(d(0.0)).sum() <= eps:
        return d(0.0)
    t = bisect(lambda t: np.abs(d(t)).sum(), float(np.abs(v).max()), eps)
    return d(t)


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------


@st.composite
def batches(draw: st.DrawFn) -> dict:
    """Rows ``v`` with budgets inside, on and outside their l1 norms, and x with exact edges."""
    dtype = draw(st.sampled_from(DTYPES))
    b, n = draw(st.integers(1, 5)), draw(st.integers(1, 30))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([1e-3, 0.1, 1.0, 10.0]))
    v = spread * torch.randn((b, n), generator=g, dtype=dtype)
    if draw(st.booleans()):  # sparse rows, with exact zeros
        v = v * (torch.rand((b, n), generator=g, dtype=dtype) < 0.3)
    # eps relative to each row's l1 norm: 1.0 is exactly on the sphere (must count as inside).
    ratios = draw(
        st.lists(
            st.sampled_from([1e-4, 0.01, 0.3, 0.7, 0.999, 1.0, 1.5, 4.0]), min_size=b, max_size=b
        )
    )
    eps = v.abs().sum(1) * torch.tensor(ratios, dtype=dtype)
    eps = torch.where(eps > 0, eps, torch.full_like(eps, 0.5))
    x = torch.rand((b, n), generator=g, dtype=dtype)
    u = torch.rand((b, n), generator=g, dtype=dtype)
    x = torch.where(u < 0.15, torch.zeros_like(x), torch.where(u > 0.85, torch.ones_like(x), x))
    return {"v": v, "eps": eps, "x": x, "g": g}


# ---------------------------------------------------------------------------------------------
# project_l1_ball
# ---------------------------------------------------------------------------------------------


@given(batches())
def test_l1_ball_matches_reference(case: dict) -> None:
    v, eps = case["v"], case["eps"]
    w = project_l1_ball(v, eps)
    assert w.dtype == v.dtype and w.shape == v.shape
    for i in range(v.shape[0]):
        ref = reference_l1_ball(v[i].double().numpy(), float(eps[i]))
        scale = max(float(eps[i]), float(v[i].abs().max()))
        np.testing.assert_allclose(w[i].double().numpy(), ref, rtol=0, atol=tol(v.dtype) * scale)
    assert bool((w.abs().sum(1) <= eps * (1 + tol(v.dtype))).all())


@given(batches())
def test_l1_ball_leaves_rows_inside_untouched(case: dict) -> None:
    v, eps = case["v"], case["eps"]
    w = project_l1_ball(v, eps)
    inside = v.abs().sum(1) <= eps
    assert torch.equal(w[inside], v[inside])
    # Rows outside are moved onto the sphere, not inside it (up to the rounding of |v|).
    outside = ~inside
    error = (w[outside].abs().sum(1) - eps[outside]).abs()
    assert bool((error <= tol(v.dtype) * (eps[outside] + v[outside].abs().sum(1))).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_ball_changes_only_examples_outside(dtype: torch.dtype) -> None:
    """Not the MSD code's quirk of projecting every example once one is outside."""
    v = torch.tensor([[0.5, -0.25, 0.125], [3.0, -1.0, 0.5], [0.125, 0.25, -0.375]], dtype=dtype)
    eps = torch.tensor([1.0, 1.0, 0.75], dtype=dtype)  # row 2 is exactly on the sphere
    w = project_l1_ball(v, eps)
    assert torch.equal(w[0], v[0]) and torch.equal(w[2], v[2])
    torch.testing.assert_close(w[1], torch.tensor([1.0, 0.0, 0.0], dtype=dtype))


# ---------------------------------------------------------------------------------------------
# project_l1_ball_box
# ---------------------------------------------------------------------------------------------


def assert_ball_box_feasible(d: torch.Tensor, x: torch.Tensor, eps: torch.Tensor) -> None:
    assert bool((d.abs().sum(1) <= eps * (1 + tol(d.dtype))).all())
    assert bool(((x + d) >= 0).all()) and bool(((x + d) <= 1).all())


@given(batches())
def test_l1_ball_box_matches_reference(case: dict) -> None:
    v, x, eps = case["v"], case["x"], case["eps"]
    d = project_l1_ball_box(v, x, eps)
    assert d.dtype == v.dtype and d.shape == v.shape
    assert_ball_box_feasible(d, x, eps)
    for i in range(v.shape[0]):
        ref = reference_l1_ball_box(v[i].double().numpy(), x[i].double().numpy(), float(eps[i]))
        scale = max(float(eps[i]), float(v[i].abs().max()))
        np.testing.assert_allclose(d[i].double().numpy(), ref, rtol=0, atol=tol(v.dtype) * scale)


@given(batches())
def test_l1_ball_box_is_closest_among_sampled_feasible_points(case: dict) -> None:
    v, x, eps, g = case["v"], case["x"], case["eps"], case["g"]
    d = project_l1_ball_box(v, x, eps)
    dist = (d - v).norm(dim=1)
    slack = tol(v.dtype) * (1 + v.abs().amax(1) + eps)
    for _ in range(20):
        # A random point of the box, pulled into the ball by a random factor: feasible.
        p = torch.rand(v.shape, generator=g, dtype=v.dtype) - x
        p = p * (eps / p.abs().sum(1).clamp_min(1e-30)).clamp(max=1)[:, None]
        p = p * torch.rand((v.shape[0], 1), generator=g, dtype=v.dtype)
        # ...and the box projection of v pulled into the ball, a strong competitor.
        q = clip_to_box(x, v)
        q = q * (eps / q.abs().sum(1).clamp_min(1e-30)).clamp(max=1)[:, None]
        for other in (p, q):
            assert bool((dist <= (other - v).norm(dim=1) + slack).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_l1_ball_box_beats_ball_then_clip(dtype: torch.dtype) -> None:
    """Where the box binds, ball-then-clip wastes budget; the exact projection uses all of it."""
    x = torch.tensor([[0.95, 0.5, 0.5]], dtype=dtype)
    v = torch.tensor([[1.0, 0.5, 0.25]], dtype=dtype)
    eps = torch.tensor([0.6], dtype=dtype)
    exact = project_l1_ball_box(v, x, eps)
    # By hand: d(t) = (min(1 - t, 0.05), 0.5 - t, 0.25 - t) has l1 norm 0.6 at t = 0.1.
    torch.testing.assert_close(exact, torch.tensor([[0.05, 0.4, 0.15]], dtype=dtype))
    clipped = clip_to_box(x, project_l1_ball(v, eps))  # (0.55, 0.05, 0) clipped to (0.05, 0.05, 0)
    torch.testing.assert_close(clipped, torch.tensor([[0.05, 0.05, 0.0]], dtype=dtype))
    assert float((exact - v).norm()) < float((clipped - v).norm())


# ---------------------------------------------------------------------------------------------
# clip_to_box
# ---------------------------------------------------------------------------------------------


@given(batches())
def test_clip_to_box_is_exactly_feasible_and_only_shrinks(case: dict) -> None:
    v, x = case["v"], case["x"]
    d = clip_to_box(x, v)
    assert bool(((x + d) >= 0).all()) and bool(((x + d) <= 1).all())
    assert bool((d.abs() <= v.abs()).all())
    assert bool((d * v >= 0).all())  # never flips a sign
    inside = ((x + v) >= 0) & ((x + v) <= 1)
    assert torch.equal(d[inside], v[inside])


def test_clip_to_box_keeps_player_balls() -> None:
    """Clipping after projecting never leaves the ball (spec §1), for each built-in player."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand((4, 3, 5, 5), generator=g)
    for player, eps in ((mr.linf, 0.1), (mr.l2, 1.0), (mr.l1(projection="ball"), 5.0)):
        raw = 3 * torch.randn(x.shape, generator=g)
        projected = player.project(x, raw, eps)
        assert bool((player.size(projected) <= eps * (1 + 1e-5)).all())
