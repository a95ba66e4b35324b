"""What identifies a Trainer's run, and the checks that keep a resume in the same run.

A ``Trainer.state_dict`` carries a description of its game (every player's settings, in order;
the aggregator and its settings; the budget policy and its settings), its optimiser's class and its
scheduler's; ``load_state_dict`` compares them with its own before restoring anything.
"""

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

_SMALL = 64
"""Tensors up to this many entries are described by value, larger ones by shape."""


def describe(obj: object) -> Any:
    """A plain description of ``obj`` (dataclasses by type and fields), for equality checks.

    Examples:
        >>> import multirobust as mr
        >>> d = describe(mr.linf(eps=0.1, alpha=0.01))
        >>> d["type"], d["eps"], d["alpha"]
        ('multirobust.players.norms.Linf', 0.1, 0.01)
    """
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Tensor):
        return obj.tolist() if obj.numel() <= _SMALL else f"tensor{list(obj.shape)}"
    if isinstance(obj, tuple | list):
        return [describe(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): describe(v) for k, v in obj.items()}
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: describe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        return {"type": kind, **fields}
    return {"type": kind}


def differences(saved: Any, here: Any, path: str) -> list[str]:
    """Every place where two descriptions differ, as ``"path: saved A, here B"``.

    Examples:
        >>> differences({"eps": 0.1, "steps": 10}, {"eps": 0.3, "steps": 10}, "linf")
        ['linf.eps: saved 0.1, here 0.3']
    """
    if isinstance(saved, dict) and isinstance(here, dict):
        out = []
        for key in [*saved, *(k for k in here if k not in saved)]:
            if key not in here or key not in saved:
                out.append(f"{path}.{key}: saved {saved.get(key)!r}, here {here.get(key)!r}")
            else:
                out += differences(saved[key], here[key], f"{path}.{key}")
        return out
    if isinstance(saved, list) and isinstance(here, list) and len(saved) == len(here):
        out = []
        for i, (a, b) in enumerate(zip(saved, here, strict=True)):
            named = isinstance(b, dict) and isinstance(b.get("name"), str)
            out += differences(a, b, f"{path}[{b['name'] if named else i}]")
        return out
    if isinstance(saved, list) and isinstance(here, list):
        names = [_name(s) for s in saved], [_name(h) for h in here]
        return [f"{path}: saved {len(saved)} {names[0]}, here {len(here)} {names[1]}"]
    return [] if saved == here else [f"{path}: saved {saved!r}, here {here!r}"]


def _name(d: Any) -> Any:
    return d.get("name", d.get("type")) if isinstance(d, dict) else d


def check_same_model(saved: dict[str, Any], here: dict[str, Any]) -> None:
    """Refuse a saved model state of another architecture before anything is loaded (torch's
    ``load_state_dict`` copies the tensors that match before it raises for the others)."""
    missing, unknown = sorted(set(here) - set(saved)), sorted(set(saved) - set(here))
    both = set(here) & set(saved)
    shapes = [(k, _shape(here[k]), _shape(saved[k])) for k in both]
    reshaped = sorted(k for k, a, b in shapes if a is not None and b is not None and a != b)
    if missing or unknown or reshaped:
        first = (missing or unknown or reshaped)[0]
        raise ValueError(
            f"state holds another model than this trainer's: {len(missing)} of its tensors "
            f"missing, {len(unknown)} unknown, {len(reshaped)} of another shape (first: "
            f"{first!r}); resume with the model the run was started with (was the checkpoint "
            "saved by another recipe or dataset?)"
        )


def _shape(t: object) -> object:
    """A tensor's shape; ``None`` for a non-tensor entry or a lazy module's uninitialised one."""
    if not isinstance(t, Tensor) or torch.nn.parameter.is_lazy(t):
        return None
    return t.shape


def check_policy_state(state: object, k: int, where: str) -> None:
    """Refuse a budget-policy state that is not a NamedTuple of tensors with ``eps`` and
    ``alpha`` ``[K]``, finite and > 0 (a resumed NaN or negative budget would be used as is)."""
    fields = getattr(state, "_fields", None)
    if not isinstance(state, tuple) or fields is None or not {"eps", "alpha"} <= set(fields):
        raise TypeError(
            f"{where} must be a NamedTuple with eps and alpha tensors [K] (such as "
            f"mr.BudgetState), got {type(state).__name__}"
        )
    for name in fields:
        if not isinstance(getattr(state, name), Tensor):
            raise TypeError(f"{where}.{name} must be a tensor, got {type(getattr(state, name))}")
    for name in ("eps", "alpha"):
        t = getattr(state, name)
        if t.shape != (k,):
            raise ValueError(f"{where}.{name} must be [K] = [{k}], got {list(t.shape)}")
        values = t.detach().double().cpu().tolist()
        if not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError(
                f"{where}.{name} must be finite and > 0 for every player, got {values}; the "
                "state is corrupted or was edited"
            )
