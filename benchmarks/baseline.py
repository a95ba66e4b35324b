"""A reference-style training step, written the straightforward way, to time the library against.

It does the same work as the library's step (same players, iterations, aggregator rule) the way
the public reference scripts do it: fp32, eager autograd on a ``requires_grad`` perturbation, one
player at a time, a separate forward pass per MSD candidate, and a per-example Python loop in the
l_1 projection. It is a timing baseline only: the library's own tests define correctness.
"""

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import multirobust as mr


def _grad(model: nn.Module, x: Tensor, y: Tensor, delta: Tensor) -> Tensor:
    delta = delta.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x + delta), y)
    loss.backward()
    return delta.grad.detach()


def _l1_project_loop(delta: Tensor, eps: float) -> Tensor:
    out = delta.clone()
    for i in range(delta.shape[0]):  # per example, as the reference code
        v = delta[i].flatten()
        if v.abs().sum() <= eps:
            continue
        u = v.abs().sort(descending=True).values
        css = u.cumsum(0)
        j = torch.arange(1, len(u) + 1, dtype=v.dtype, device=v.device)
        rho = int((u * j > css - eps).nonzero().max()) + 1
        theta = (css[rho - 1] - eps) / rho
        out[i] = (torch.sign(v) * (v.abs() - theta).clamp_min(0)).view_as(delta[i])
    return out


def _step(player: mr.Player, x: Tensor, delta: Tensor, g: Tensor) -> Tensor:
    if isinstance(player, mr.Linf):
        d = (delta + player.alpha * g.sign()).clamp(-player.eps, player.eps)
    elif isinstance(player, mr.L2):
        n = g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        d = delta + player.alpha * g / n
        dn = d.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        d = d * (player.eps / torch.maximum(dn, torch.tensor(player.eps)))
    else:
        k = random.randint(player.k_min, player.k_max)
        a = g.abs().flatten(1)
        thr = a.topk(k, dim=1).values[:, -1:]
        e = (torch.sign(g.flatten(1)) * (a >= thr)).view_as(g)
        e = e / e.flatten(1).abs().sum(dim=1).clamp_min(1).view(-1, *[1] * (x.dim() - 1))
        d = _l1_project_loop(delta + player.alpha * e, player.eps)
    return torch.min(torch.max(d, -x), 1 - x)


def _pgd(model: nn.Module, player: mr.Player, x: Tensor, y: Tensor) -> Tensor:
    delta = torch.zeros_like(x)
    for _ in range(player.steps):
        delta = _step(player, x, delta, _grad(model, x, y, delta))
    return delta


def baseline_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    method: str,
    players: tuple,
    x: Tensor,
    y: Tensor,
    msd_steps: int,
) -> float:
    """One training step of ``method`` (max, avg, msd) the reference way; returns the loss."""
    model.eval()
    if method == "msd":
        delta = torch.zeros_like(x)
        best, best_loss = delta, torch.full((x.shape[0],), -1.0, device=x.device)
        for _ in range(msd_steps):
            g = _grad(model, x, y, delta)
            win, win_loss = delta, torch.full((x.shape[0],), -1.0, device=x.device)
            for p in players:
                cand = _step(p, x, delta, g)
                with torch.no_grad():
                    loss = F.cross_entropy(model(x + cand), y, reduction="none")
                mask = loss >= win_loss
                win = torch.where(mask.view(-1, *[1] * (x.dim() - 1)), cand, win)
                win_loss = torch.max(win_loss, loss)
            delta = win
            mask = win_loss > best_loss
            best = torch.where(mask.view(-1, *[1] * (x.dim() - 1)), delta, best)
            best_loss = torch.max(best_loss, win_loss)
        batch_x, batch_y = x + best, y
    else:
        deltas = [_pgd(model, p, x, y) for p in players]
        if method == "avg":
            batch_x, batch_y = torch.cat([x + d for d in deltas]), y.repeat(len(players))
        else:
            with torch.no_grad():
                losses = torch.stack(
                    [F.cross_entropy(model(x + d), y, reduction="none") for d in deltas]
                )
            pick = losses.argmax(dim=0)
            stacked = torch.stack(deltas)
            batch_x, batch_y = x + stacked[pick, torch.arange(x.shape[0], device=x.device)], y
    model.train()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(batch_x), batch_y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
