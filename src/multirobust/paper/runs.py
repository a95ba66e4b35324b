"""A recipe's run folder: checkpointed training, whole-or-nothing JSON files, and the settings a
resumed run must share with the run it continues.

Examples:
    >>> import tempfile
    >>> path = tempfile.mkdtemp() + "/config.json"
    >>> save_json(path, {"seed": 0})
    >>> changed_settings(path, {"seed": 1}, ["seed"])
    'the run was started with seed=0, not seed=1'
"""

import json
import os
from collections.abc import Iterable
from typing import Any

import multirobust as mr
from multirobust import _checks, checkpoint


def fit_with_checkpoints(
    trainer: mr.Trainer,
    loader: Iterable[Any],
    epochs: int,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    is_main: bool = True,
    sampler: Any = None,
) -> mr.History:
    """Train to ``epochs`` epochs in total, checkpointing every epoch to ``out/checkpoint.pt``.

    With ``resume``, training continues from the last checkpoint (the same final weights as an
    uninterrupted run with the same seed, on CPU), and ``out/metrics.jsonl`` is cut back to the
    steps that checkpoint had finished. Only the main rank writes files.

    Args:
        trainer: the trainer (its ``log_path`` should be ``out/metrics.jsonl`` on the main rank).
        loader: yields ``(x, y)`` batches.
        epochs: total epochs of the run (not additional ones).
        out: the run's folder.
        resume: continue from ``out/checkpoint.pt`` if it exists.
        is_main: whether this process writes checkpoints (rank 0 under DDP).
        sampler: a ``DistributedSampler`` whose epoch is set before each epoch, or ``None``.

    Returns:
        The history of every step of the run, including resumed ones.

    Raises:
        multirobust.checkpoint.CheckpointError: with ``resume``, ``out/checkpoint.pt`` cannot be
            read, or was not written by this function (a bare ``state_dict``, say).
    """
    _checks.integer_at_least("epochs", epochs, 1)
    path = os.path.join(os.fspath(out), "checkpoint.pt")
    records: list[dict[str, Any]] = []
    if resume and os.path.exists(path):
        state = checkpoint.load(path, map_location=trainer.device)
        records = _recipe_state(path, state)
        trainer.load_state_dict(state["trainer"])
        if is_main and trainer.log_path is not None:
            with open(trainer.log_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
    elif is_main and trainer.log_path is not None and os.path.exists(trainer.log_path):
        os.remove(trainer.log_path)  # a fresh run: no stale steps from an earlier one
    history = mr.History(records)
    while trainer.epochs_done < epochs:
        if sampler is not None:
            sampler.set_epoch(trainer.epochs_done)
        history.records += trainer.fit(loader, 1).records
        if is_main:
            state = {"trainer": trainer.state_dict(), "history": json.dumps(history.records)}
            checkpoint.save(path, state)
    return history


def _recipe_state(path: str, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The step records of a checkpoint ``fit_with_checkpoints`` wrote; a clear error otherwise."""
    if not isinstance(state.get("trainer"), dict) or not isinstance(state.get("history"), str):
        keys = sorted(map(str, state))
        shown = ", ".join(map(repr, keys[:4])) + (", ..." if len(keys) > 4 else "")
        raise checkpoint.CheckpointError(
            f"{path} is not a recipe checkpoint: it holds {{{shown}}}, not the 'trainer' and "
            "'history' that fit_with_checkpoints writes (a bare state_dict?); move it out of the "
            "run folder, or pick another --out"
        )
    try:
        records = json.loads(state["history"])
    except ValueError as e:
        raise checkpoint.CheckpointError(
            f"{path}: its 'history' is not valid JSON ({e}); delete the checkpoint to train "
            "from the start, or pick another --out"
        ) from e
    return records


def read_json(path: str | os.PathLike[str], fix: str) -> Any:
    """Read a run's JSON file; one that is not valid JSON (half-written, say) raises a
    ``ValueError`` naming the file and ``fix``.

    Examples:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/results.json"
        >>> _ = open(path, "w").write('{"MAX": {"cle')
        >>> read_json(path, "delete it")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: .../results.json is not valid JSON (a write cut short?: ...); delete it
    """
    with open(path) as f:
        text = f.read()
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(
            f"{os.fspath(path)} is not valid JSON (a write cut short?: {e}); {fix}"
        ) from None


def save_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path``, whole or not at all
    (:func:`multirobust.checkpoint.write_atomic`), so a run cut short keeps the last full file.

    Examples:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/results.json"
        >>> save_json(path, {"MSD": {"clean": 0.97}})
        >>> json.load(open(path))
        {'MSD': {'clean': 0.97}}
    """
    text = json.dumps(obj, indent=2).encode()
    checkpoint.write_atomic(path, lambda f: f.write(text))


def changed_settings(
    config_path: str | os.PathLike[str], asked: dict[str, Any], keys: Iterable[str]
) -> str | None:
    """Why a run cannot resume the run whose ``config.json`` is at ``config_path``: the ``keys``
    whose saved values differ from ``asked``, or a file that cannot be read; ``None`` if none.

    Examples:
        >>> import tempfile
        >>> path = tempfile.mkdtemp() + "/config.json"
        >>> save_json(path, {"method": "msd", "seed": 0})
        >>> changed_settings(path, {"method": "max", "seed": 0}, ["method", "seed"])
        "the run was started with method='msd', not method='max'"
    """
    try:
        with open(config_path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        return f"{os.fspath(config_path)} cannot be read ({e}); restore it, or delete it"
    changed = [k for k in keys if saved.get(k) != asked[k]]
    if not changed:
        return None
    was = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
    now = ", ".join(f"{k}={asked[k]!r}" for k in changed)
    return f"the run was started with {was}, not {now}"
