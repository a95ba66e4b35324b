"""Per-player parameter gradients, all players at once, with ``torch.func``.

For each player's adversarial batch ``x_p`` this computes ``g_p = grad_w mean_b CE(f_w(x_p), y)``
and its norm over all parameters flattened. ``vmap`` runs over the player axis with
``functional_call``, or a loop over players (see ``player_gradients``); every player gets its own
copy of the model's buffers, made inside the differentiated function, so BatchNorm in train mode
computes its batch statistics per player as K separate passes would, the model's own running
statistics are never touched, and a compiled gradient mutates none of its inputs (which would rule
out CUDA graphs).
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from multirobust import _checks
from multirobust._compile import Compile, iteration

NORMS = ("l1", "l2")


class PlayerGradients(NamedTuple):
    """Per-player gradient statistics.

    Attributes:
        norm: ``||g_p||`` over all trainable parameters flattened, ``[K]``.
        loss: each player's mean cross-entropy, ``[K]``.
    """

    norm: Float[Tensor, " k"]
    loss: Float[Tensor, " k"]


def _norm(grads: dict[str, Tensor], norm: str) -> Tensor:
    if norm == "l1":
        return sum(g.abs().sum() for g in grads.values())  # type: ignore[return-value]
    return torch.sqrt(sum(g.pow(2).sum() for g in grads.values()))  # type: ignore[arg-type]


def _one_player(
    model: nn.Module,
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    x: Tensor,
    y: Tensor,
    norm: str,
) -> tuple[Tensor, Tensor]:
    """``(||g||, loss)`` of one player's batch ``x``; ``buffers`` are read, never written."""

    def loss_of(p: dict[str, Tensor], xp: Tensor) -> Tensor:
        own = {n: t.clone() for n, t in buffers.items()}  # BatchNorm updates this copy in place
        return F.cross_entropy(functional_call(model, (p, own), (xp,)).float(), y)

    grads, loss = grad_and_value(loss_of)(params, x)
    return _norm(grads, norm), loss


def _all_players(
    model: nn.Module,
    params: dict[str, Tensor],
    buffers: dict[str, Tensor],
    inputs: Tensor,
    y: Tensor,
    norm: str,
) -> tuple[Tensor, Tensor]:
    """``_one_player`` vmapped over the player axis of ``inputs`` and of the stacked buffers."""

    def one(b: dict[str, Tensor], x: Tensor) -> tuple[Tensor, Tensor]:
        return _one_player(model, params, b, x, y, norm)

    return vmap(one, randomness="different")(buffers, inputs)


def player_gradients(
    model: nn.Module,
    inputs: Float[Tensor, "k b *s"],
    y: Tensor,
    norm: str = "l2",
    method: str = "auto",
    compiled: Compile = False,
) -> PlayerGradients:
    """Norms of the parameter gradients of each player's adversarial batch, in the model's mode.

    Args:
        model: the classifier; its parameters, buffers and flags are left exactly as found.
        inputs: each player's adversarial batch, stacked: ``[K, b, ...]``.
        y: the labels ``[b]``.
        norm: ``"l2"`` or ``"l1"``: the norm of the flattened gradient.
        method: ``"vmap"`` (one vectorised pass over players), ``"loop"`` (K passes; for models
            that vmap cannot handle, and as the reference in tests), or ``"auto"``: vmap, except
            on CPU, where the loop measured faster, eager and compiled
            (``benchmarks/player_gradients.py``), and under an enabled autocast, where torch's
            vmap rule for BatchNorm fails on bf16 activations (torch 2.11-2.14).
        compiled: run the gradient computation through ``torch.compile`` (``True`` or a mode,
            as ``multirobust.attacks.iteration``).

    Returns:
        ``PlayerGradients`` with ``norm`` and ``loss``, each ``[K]``.

    Examples:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> out = player_gradients(net, torch.rand(2, 5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1]))
        >>> out.norm.shape
        torch.Size([2])
    """
    _checks.one_of("norm", norm, NORMS)
    _checks.one_of("method", method, ("auto", "vmap", "loop"))
    if inputs.dim() < 3 or inputs.shape[1] != y.shape[0]:
        raise ValueError(
            f"inputs must be [K, b, ...] with b = len(y) = {y.shape[0]}, got shape "
            f"{list(inputs.shape)}; stack the players' batches with torch.stack"
        )
    if method == "auto":
        autocast = torch.is_autocast_enabled(inputs.device.type)
        method = "loop" if autocast or inputs.device.type == "cpu" else "vmap"
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())
    k = inputs.shape[0]
    with torch.no_grad():  # the transforms inside still differentiate; nothing leaks outside
        if method == "loop":
            one = iteration(_one_player, compiled)
            out = [one(model, params, buffers, inputs[i], y, norm) for i in range(k)]
            return PlayerGradients(
                torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
            )
        stacked = {n: t.unsqueeze(0).expand(k, *t.shape) for n, t in buffers.items()}
        norms, losses = iteration(_all_players, compiled)(model, params, stacked, inputs, y, norm)
        return PlayerGradients(norms, losses)
