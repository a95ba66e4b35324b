"""Batched, loop-free projections onto norm balls and the [0, 1] box.

All functions work per example on flattened perturbations ``[b, n]`` and accept a budget per
example ``[b]``; none of them syncs with the host, so they run inside compiled code.
"""

import torch
from jaxtyping import Float
from torch import Tensor


def project_l1_ball(v: Float[Tensor, " b n"], eps: Float[Tensor, " b"]) -> Float[Tensor, " b n"]:
    """Euclidean projection of each row of ``v`` onto the l1 ball of radius ``eps``.

    The exact sort-based algorithm of Duchi et al. (2008), batched. Rows already inside their ball
    are returned unchanged (bit for bit).

    Examples:
        >>> v = torch.tensor([[3.0, 1.0, 0.0], [0.2, 0.1, 0.0]])
        >>> project_l1_ball(v, torch.tensor([2.0, 2.0]))
        tensor([[2.0000, 0.0000, 0.0000],
                [0.2000, 0.1000, 0.0000]])
    """
    if torch.finfo(v.dtype).bits < 32:  # bf16 cannot count past 256: work in float32
        return project_l1_ball(v.float(), eps.float()).to(v.dtype)  # inside rows: exact
    a = v.abs()
    outside = a.sum(dim=1) > eps
    u = a.sort(dim=1, descending=True).values
    css = u.cumsum(dim=1)
    j = torch.arange(1, v.shape[1] + 1, device=v.device, dtype=v.dtype)
    # rho = the last index j (1-based) with u_j * j > css_j - eps; the condition holds on a prefix.
    active = u * j > css - eps[:, None]
    rho = (active * j).amax(dim=1).clamp_min(1)
    theta = (css.gather(1, rho.long()[:, None] - 1) - eps[:, None]) / rho[:, None]
    w = torch.sign(v) * (a - theta).clamp_min(0)
    # ``a - theta`` cancels when |v| >> eps (float32: 2e-4 over the ball at |v| / eps = 1e4); pull
    # any such row back onto the sphere. Elsewhere the factor is 1 up to rounding.
    w = w * (eps / torch.maximum(w.abs().sum(dim=1), eps))[:, None]
    return torch.where(outside[:, None], w, v)


def project_l1_ball_box(
    v: Float[Tensor, " b n"], x: Float[Tensor, " b n"], eps: Float[Tensor, " b"], iters: int = 40
) -> Float[Tensor, " b n"]:
    """Exact projection of each row of ``v`` onto {d : ||d||_1 <= eps, 0 <= x + d <= 1}.

    The "Mind the box" problem (Croce & Hein, 2021). The solution is
    ``d_i(t) = clip(sign(v_i) * max(|v_i| - t, 0), -x_i, 1 - x_i)`` for the smallest ``t >= 0``
    with ``||d(t)||_1 <= eps``. ``||d(t)||_1`` is piecewise linear and non-increasing in ``t``; we
    bracket ``t`` by bisection, then solve the linear piece that contains it exactly.

    Examples:
        >>> x = torch.tensor([[0.9, 0.5]])
        >>> project_l1_ball_box(torch.tensor([[0.5, 0.5]]), x, torch.tensor([0.4]))
        tensor([[0.1000, 0.3000]])
    """
    if torch.finfo(v.dtype).bits < 32:  # as in project_l1_ball: work in float32
        return project_l1_ball_box(v.float(), x.float(), eps.float(), iters).to(v.dtype)
    boxed = v.clamp(-x, 1 - x)
    # Capacity of each coordinate in the direction of v_i.
    cap = torch.where(v >= 0, 1 - x, x)
    a = v.abs()

    def mass(t: Tensor) -> Tensor:
        return torch.minimum((a - t[:, None]).clamp_min(0), cap).sum(dim=1)

    inside = boxed.abs().sum(dim=1) <= eps
    lo = torch.zeros_like(eps)
    hi = a.amax(dim=1)
    for _ in range(iters):
        mid = (lo + hi) / 2
        over = mass(mid) > eps
        lo = torch.where(over, mid, lo)
        hi = torch.where(over, hi, mid)
    # On the piece containing the root: free coordinates move with t, capped ones are constant.
    t = hi
    shrunk = a - t[:, None]
    free = (shrunk > 0) & (shrunk < cap)
    capped = (shrunk >= cap) & (cap > 0)
    n_free = free.sum(dim=1)
    exact = ((a * free).sum(dim=1) + (cap * capped).sum(dim=1) - eps) / n_free.clamp_min(1)
    t = torch.where(n_free > 0, exact.clamp(lo, hi), t)
    d = torch.sign(v) * torch.minimum((a - t[:, None]).clamp_min(0), cap)
    # As in project_l1_ball: undo the cancellation in ``a - t`` when |v| >> eps (shrinking each
    # |d_i| keeps the box).
    d = d * (eps / torch.maximum(d.abs().sum(dim=1), eps))[:, None]
    return torch.where(inside[:, None], boxed, d)


def clip_to_box(x: Float[Tensor, " b *s"], delta: Float[Tensor, " b *s"]) -> Float[Tensor, " b *s"]:
    """Clip ``delta`` so that ``x + delta`` lies in [0, 1]; each ``|delta_i|`` only shrinks.

    Examples:
        >>> clip_to_box(torch.tensor([[0.9, 0.1]]), torch.tensor([[0.3, -0.3]]))
        tensor([[ 0.1000, -0.1000]])
    """
    return torch.minimum(torch.maximum(delta, -x), 1 - x)
