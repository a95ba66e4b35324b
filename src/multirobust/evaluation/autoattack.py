"""Adapter to ``pyautoattack`` (the official AutoAttack code on PyPI) for ``evaluate``.

One AutoAttack run per threat and per batch; what comes back is a per-example boolean "still
correct", so the adversarial images of a batch are dropped as soon as it is scored. The model runs
in eval mode, torch's global RNG is restored afterwards (APGD reseeds it), and the warnings
AutoAttack logs (randomised defence, softmax outputs, ...) are collected for the report.

Examples:
    >>> import multirobust as mr
    >>> autoattack_norm(mr.l2)
    'L2'
"""

import logging

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from multirobust.attacks import frozen_model
from multirobust.players import L1, L2, Linf

VERSIONS = ("standard", "apgd")
"""``"standard"``: AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square).
``"apgd"``: only its APGD-CE and APGD-T, with the standard version's settings (E-AT, RAMP)."""

_NORMS: tuple[tuple[type, str], ...] = ((Linf, "Linf"), (L2, "L2"), (L1, "L1"))


def require_autoattack() -> type:
    """The ``AutoAttack`` class, or an ImportError that says how to install it."""
    try:
        from pyautoattack import AutoAttack
    except ImportError as e:
        raise ImportError(
            'the AutoAttack suites need the pyautoattack package: pip install "multirobust[eval]"'
        ) from e
    return AutoAttack


def autoattack_norm(player: object) -> str:
    """AutoAttack's norm name for a built-in player (``"Linf"``, ``"L2"``, ``"L1"``).

    Raises:
        TypeError: for any other player: AutoAttack only attacks l_inf, l_2 and l_1 balls.
    """
    for cls, norm in _NORMS:
        if isinstance(player, cls):
            return norm
    name = getattr(player, "name", "?")
    raise TypeError(
        f"threat {name!r} ({type(player).__name__}) is not one of the built-in l_inf, l_2, l_1 "
        "players, and AutoAttack only attacks those balls; evaluate user-defined players with "
        "suite='pgd'"
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def autoattack_correct(
    model: nn.Module,
    x: Float[Tensor, " b *s"],
    y: Int[Tensor, " b"],
    *,
    norm: str,
    eps: float,
    version: str,
    seed: int,
) -> tuple[Bool[Tensor, " b"], list[str]]:
    """Whether each example is still classified correctly after AutoAttack, and its warnings.

    Args:
        model: a classifier returning logits; put in eval mode for the run and restored after.
        x: one batch of inputs (already checked), on the model's device.
        y: its labels.
        norm: ``"Linf"``, ``"L2"`` or ``"L1"``.
        eps: the budget.
        version: one of ``VERSIONS``.
        seed: AutoAttack's seed.

    Returns:
        ``(correct [b], warning messages)``.
    """
    auto_attack = require_autoattack()
    with torch.no_grad(), frozen_model(model):
        classes = model(x[:1]).shape[1]
    if classes < 4:
        raise ValueError(
            f"AutoAttack's targeted DLR loss needs at least 4 classes, the model has {classes}; "
            "use suite='pgd'"
        )
    attack = auto_attack(
        model, norm=norm, eps=float(eps), version="standard", device=x.device, seed=seed
    )
    attack.verbose = False
    # More target classes than the model has would index past its logits.
    attack.apgd_targeted.n_target_classes = min(attack.apgd_targeted.n_target_classes, classes - 1)
    attack.fab.n_target_classes = min(attack.fab.n_target_classes, classes - 1)
    if version == "apgd":
        attack.attacks_to_run = ["apgd-ce", "apgd-t"]
    collect = _Collect()
    logger = logging.getLogger("auto-attack")
    logger.addHandler(collect)
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), frozen_model(model):
            _, y_adv = attack.run_standard_evaluation(x, y, batch_size=x.shape[0])
    finally:
        logger.removeHandler(collect)
    messages = [f"AutoAttack ({norm}, eps={eps:g}): {m}" for m in collect.messages]
    return (y_adv == y).to(torch.bool), messages


def default_seed(seed: int | None) -> int:
    """``seed``, or one drawn from torch's global RNG (so ``torch.manual_seed`` repeats a run)."""
    if seed is not None:
        return seed
    return int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64))


__all__ = [
    "VERSIONS",
    "autoattack_correct",
    "autoattack_norm",
    "default_seed",
    "require_autoattack",
]
