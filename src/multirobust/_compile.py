"""How the library runs its hot functions through ``torch.compile``: the modes, and one cache.

Attack iterations, per-player gradients and the training forward are compiled one function at a
time; the Python loops around them stay eager. Budgets are tensor arguments, so changing them never
recompiles.
"""

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from multirobust import _checks

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
"""The ``torch.compile`` modes an attack iteration can run under (``compile=True``: default)."""

Compile = bool | str
"""How attack iterations run: ``False`` eager, ``True`` compiled, or a mode of ``COMPILE_MODES``
(``"reduce-overhead"``: compiled and replayed as CUDA graphs on a GPU)."""

WITHOUT_GRAPHS: dict[object, str] = {
    True: "default",
    "reduce-overhead": "default",
    "max-autotune": "max-autotune-no-cudagraphs",
}
"""The compile mode of the training step for each mode of the attacks: never CUDA graphs (the
step's autograd graph does not need them)."""

F_ = TypeVar("F_", bound=Callable[..., Any])


@functools.cache
def _compiled(fn: Callable[..., Any], mode: str) -> Callable[..., Any]:
    return torch.compile(fn, dynamic=False, mode=None if mode == "default" else mode)


def iteration(fn: F_, compile: Compile, name: str = "compiled") -> F_:
    """``fn`` (an attack iteration), or ``fn`` through ``torch.compile`` in the mode ``compile``.

    Compiled once per mode and reused (per model, player and shape, as ``torch.compile``
    guards). Under CUDA graphs each call starts a new graph step and copies its outputs (a tuple
    of tensors) out of the graph's memory, so the attack loop may keep them across iterations.
    ``name`` is the argument a bad mode is reported under.

    Examples:
        >>> iteration(abs, False) is abs
        True
    """
    if compile is False:
        return fn
    mode = "default" if compile is True else compile
    _checks.one_of(name, mode, COMPILE_MODES)
    compiled = _compiled(fn, mode)
    if mode not in ("reduce-overhead", "max-autotune"):
        return compiled  # type: ignore[return-value]

    def replayed(*args: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return tuple(t.clone() for t in compiled(*args))

    return replayed  # type: ignore[return-value]


def training_mode(compile: Compile) -> Compile:
    """The mode of the training forward and backward for attacks compiled with ``compile``."""
    return WITHOUT_GRAPHS.get(compile, compile)  # type: ignore[call-overload]
