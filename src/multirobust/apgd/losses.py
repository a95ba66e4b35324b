"""APGD's losses: cross-entropy, the DLR loss and its targeted version (Croce & Hein, ICML 2020).

Each loss has the ``attack_loss(logits, reference)`` of an ``Objective``, so the library's input
gradient runs it unchanged. The DLR losses are invariant to shifting and rescaling the logits.

Examples:
    >>> logits = torch.tensor([[3.0, 1.0, 0.0]])
    >>> round(float(dlr.attack_loss(logits, torch.tensor([0]))), 4)  # -(3 - 1) / (3 - 0)
    -0.6667
"""

import dataclasses
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

LOSSES = ("ce", "dlr", "dlr-targeted")
"""The losses ``apgd`` climbs: cross-entropy, DLR, targeted DLR."""

MIN_CLASSES = {"ce": 2, "dlr": 3, "dlr-targeted": 4}
"""The fewest classes each loss is defined for (DLR divides by ``z_1 - z_3``; the targeted DLR
by ``z_1 - (z_3 + z_4) / 2``, with ``z_i`` the i-th largest logit)."""


@runtime_checkable
class AttackLoss(Protocol):
    """What APGD climbs: a per-example loss of the logits (an ``Objective`` is one)."""

    def attack_loss(self, logits: Tensor, reference: Tensor) -> Tensor:
        """The per-example loss ``[b]``."""
        ...


_TINY = 1e-12  # keeps the DLR denominators positive when the sorted logits tie


def _true_logit(z: Tensor, y: Tensor) -> Tensor:
    return z.gather(1, y[:, None]).squeeze(1)


@dataclasses.dataclass(frozen=True)
class CE:
    """Per-example cross-entropy, in float32 (APGD-CE)."""

    def attack_loss(self, logits: Tensor, reference: Int[Tensor, " b"]) -> Float[Tensor, " b"]:
        """``CE(logits, reference)``; ``reference`` is the labels."""
        return F.cross_entropy(logits.float(), reference, reduction="none")


@dataclasses.dataclass(frozen=True)
class DLR:
    """The Difference of Logits Ratio: ``-(z_y - max_{i != y} z_i) / (z_1 - z_3)``.

    ``z_1 >= z_2 >= z_3`` are the sorted logits. Positive exactly when ``y`` is not the top class.
    """

    def attack_loss(self, logits: Tensor, reference: Int[Tensor, " b"]) -> Float[Tensor, " b"]:
        """The DLR loss of each row against its label ``reference``."""
        z = logits.float()
        top = z.topk(3, dim=1).values
        z_y = _true_logit(z, reference)
        other = z.scatter(1, reference[:, None], -torch.inf).amax(dim=1)
        return -(z_y - other) / (top[:, 0] - top[:, 2] + _TINY)


@dataclasses.dataclass(frozen=True)
class TargetedDLR:
    """The targeted DLR loss: ``-(z_y - z_t) / (z_1 - (z_3 + z_4) / 2)`` for target class ``t``.

    ``reference`` is ``[b, 2]``: the label and the target of each example.
    """

    def attack_loss(self, logits: Tensor, reference: Int[Tensor, " b 2"]) -> Float[Tensor, " b"]:
        """The targeted DLR loss of each row; ``reference[:, 0]`` labels, ``[:, 1]`` targets."""
        z = logits.float()
        top = z.topk(4, dim=1).values
        z_y = _true_logit(z, reference[:, 0])
        z_t = _true_logit(z, reference[:, 1])
        return -(z_y - z_t) / (top[:, 0] - (top[:, 2] + top[:, 3]) / 2 + _TINY)


ce = CE()
dlr = DLR()
targeted_dlr = TargetedDLR()
OBJECTS = {"ce": ce, "dlr": dlr, "dlr-targeted": targeted_dlr}


def check_classes(loss: str, classes: int, targets: int | None) -> int:
    """The number of target classes a run uses (1 for untargeted losses); raises, naming the fix,
    when the model has too few classes for ``loss`` or for ``targets``."""
    need = MIN_CLASSES[loss]
    if classes < need:
        other = "'ce' or 'dlr'" if classes >= 3 else "'ce'"
        raise ValueError(
            f"loss={loss!r} needs a model with at least {need} classes, got {classes} classes; "
            f"use loss={other}"
        )
    if loss != "dlr-targeted":
        return 1
    if targets is None:
        return min(9, classes - 1)
    if targets > classes - 1:
        raise ValueError(
            f"targets={targets} is more than the {classes - 1} classes other than the label of a "
            f"{classes}-class model; pass targets <= {classes - 1} (or None)"
        )
    return targets


def target_classes(
    clean: Float[Tensor, " b c"], y: Int[Tensor, " b"], rank: int
) -> Int[Tensor, " b"]:
    """The class of each example with the ``rank``-th largest clean logit other than its label
    (rank 0: the runner-up, as APGD-T's first target).

    Examples:
        >>> target_classes(torch.tensor([[0.0, 3.0, 2.0, 1.0]]), torch.tensor([1]), 1)
        tensor([3])
    """
    others = clean.float().scatter(1, y[:, None], -torch.inf)
    return others.topk(rank + 1, dim=1).indices[:, rank]
