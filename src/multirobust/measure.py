"""Measuring the players: per-player attacks and parameter-gradient norms for budget policies.

A budget policy declares what it needs as a ``Measure`` (when: before the batch's attack or after
it; the gradients' norm; probe attacks' length); the Trainer calls ``measure_players`` when asked
and hands the ``Measurements`` to the policy's ``update``. Gradients and the attacks run here use
cross-entropy, as the paper's Alg. 2 does, whatever the aggregator's objective; only a loss-only
measurement that reuses the aggregator's own batches reports its attack loss.
"""

from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.profiler import record_function

from multirobust import _checks
from multirobust._compile import Compile
from multirobust.aggregators import Aggregator, Perturbed, attack_each, base_budgets
from multirobust.attacks import frozen_model
from multirobust.gradients import NORMS, player_gradients

WHEN = ("before", "after")


class Measure(NamedTuple):
    """What a budget policy needs measured on each batch, and when.

    Attributes:
        when: ``"before"`` the aggregator's attack (per-player attacks at the base budgets, with
            the players' own steps; the budgets then apply to this batch) or ``"after"`` it (the
            aggregator's own per-player batches when it made them, as MAX and AVG do, else probe
            attacks; the budgets then apply to the next batch).
        norm: ``"l2"`` or ``"l1"``: the norm of each player's flattened parameter gradient.
        probe_steps: steps of the per-player attacks (``None``: the players' own), with step
            size ``max(alpha, eps / probe_steps)``.
        gradients: measure parameter-gradient norms (else only each player's loss).

    Examples:
        >>> Measure("after", probe_steps=10).gradients
        True
    """

    when: str
    norm: str = "l2"
    probe_steps: int | None = None
    gradients: bool = True


class Measurements(NamedTuple):
    """What ``measure_players`` found, one entry per player.

    Attributes:
        loss: each player's mean cross-entropy at its adversarial batch, ``[K]``.
        norm: ``||g_p||`` over all trainable parameters, ``[K]``; ``None`` unless measured.
    """

    loss: Float[Tensor, " k"]
    norm: Float[Tensor, " k"] | None


def check_measure(measure: object) -> Measure | None:
    """``measure`` if it is ``None`` or a valid ``Measure``, else a clear error."""
    if measure is None:
        return None
    if not isinstance(measure, Measure):
        raise TypeError(
            "a budget policy's measure must be a multirobust.Measure or None, got "
            f"{type(measure).__name__}"
        )
    _checks.one_of("measure.when", measure.when, WHEN)
    _checks.one_of("measure.norm", measure.norm, NORMS)
    if measure.probe_steps is not None:
        _checks.integer_at_least("measure.probe_steps", measure.probe_steps, 1)
    return measure


def probe_step_sizes(
    eps: Float[Tensor, " k"], alpha: Float[Tensor, " k"], steps: int
) -> Float[Tensor, " k"]:
    """Step sizes of per-player probe attacks of ``steps`` steps: ``max(alpha, eps / steps)``.

    A probe this short can still reach its budget's boundary; the players' own step sizes are
    tuned for their own step counts (see ``benchmarks/probe_fidelity.py``).

    Examples:
        >>> probe_step_sizes(torch.tensor([1.0, 3.0]), torch.tensor([0.75, 0.5]), 2).tolist()
        [0.75, 1.5]
    """
    return torch.maximum(alpha, eps / steps)


def measure_players(
    model: nn.Module,
    aggregator: Aggregator,
    x: Tensor,
    y: Tensor,
    measure: Measure,
    *,
    generator: torch.Generator | None = None,
    batch: Perturbed | None = None,
    compiled: Compile = False,
) -> Measurements:
    """Each player's loss (and parameter-gradient norm) on a checked batch, as ``measure`` asks.

    Args:
        model: the classifier (attacks run it frozen; gradients in its own mode, without
            touching its parameters, buffers or flags).
        aggregator: whose players are measured.
        x: the clean batch; y: its labels.
        measure: what to measure (see ``Measure``).
        generator: the source of the attacks' randomness.
        batch: the aggregator's output on this batch, for ``measure.when == "after"``: its
            per-player batches are reused when it has them.
        compiled: run attacks and gradients through ``torch.compile``.

    Examples:
        >>> import torch, multirobust as mr
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> agg = mr.max_(mr.linf(eps=0.1, steps=2), mr.l2(eps=0.5, steps=2))
        >>> x, y = torch.rand(5, 1, 2, 2), torch.randint(0, 3, (5,))
        >>> m = measure_players(net, agg, x, y, Measure("before"))
        >>> m.norm.shape
        torch.Size([2])
    """
    players = aggregator.players
    if measure.when == "after" and batch is not None and batch.per_player is not None:
        inputs, loss = batch.per_player, batch.player_loss
    else:
        eps0, alpha0 = base_budgets(players, x.device)
        if measure.probe_steps is not None:
            alpha0 = probe_step_sizes(eps0, alpha0, measure.probe_steps)
        with frozen_model(model), record_function("multirobust.player_attacks"):
            inputs, losses = attack_each(
                model,
                players,
                x,
                y,
                eps0,
                alpha0,
                generator,
                steps=measure.probe_steps,
                compiled=compiled,
            )
        loss = losses.mean(dim=1)
    if not measure.gradients:
        return Measurements(loss, None)  # type: ignore[arg-type]
    with record_function("multirobust.player_gradients"):
        grads = player_gradients(model, inputs, y, measure.norm, compiled=compiled)
    return Measurements(grads.loss, grads.norm)
