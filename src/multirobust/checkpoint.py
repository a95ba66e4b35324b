"""Checkpoints that survive a crash and never execute code when loaded.

``save`` writes to a temporary file in the same folder, flushes it to disk and renames it over the
target, so a process killed mid-write leaves the previous checkpoint intact. ``load`` uses
``torch.load(weights_only=True)``: a crafted pickle is refused, and a truncated or corrupted file
raises ``CheckpointError`` naming the file.

Examples:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/last.pt"
    >>> save(path, {"epoch": 3, "w": torch.ones(2)})
    >>> load(path)["epoch"]
    3
"""

import os
import secrets
from collections.abc import Callable
from typing import Any, BinaryIO

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or unsafe to load."""


def save(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename).

    Raises:
        TypeError: ``state`` is not a dict (``load`` only returns dicts).
    """
    if not isinstance(state, dict):
        raise TypeError(
            f"state must be a dict (e.g. {{'model': model.state_dict()}}), got "
            f"{type(state).__name__}; load() refuses anything else"
        )
    write_atomic(path, lambda f: torch.save(state, f))


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Create or replace the file ``path`` whole or not at all: ``write(f)`` fills a temporary
    file in the same folder, which is flushed to disk and renamed over ``path``. The file gets
    the mode a plain ``open(path, "w")`` would give it (a replaced file keeps its own).

    Raises:
        IsADirectoryError: ``path`` is a folder.

    Examples:
        >>> import json, tempfile
        >>> path = tempfile.mkdtemp() + "/results.json"
        >>> write_atomic(path, lambda f: f.write(json.dumps({"acc": 0.9}).encode()))
        >>> open(path).read()
        '{"acc": 0.9}'
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder; pass a file's path, e.g. {path}/state.pt")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _new_temporary(folder, os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _copy_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _new_temporary(folder: str, suffix: str) -> tuple[int, str]:
    """A new hidden file in ``folder``, opened for writing. Created with mode 0o666, so that the
    umask (and the folder's default ACL) apply as they do to ``open`` (``mkstemp``'s is 0o600)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(folder, f".tmp-{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue


def _copy_mode(source: str, target: str) -> None:
    """Give ``target`` the mode of ``source`` if it exists (best effort: some mounts refuse)."""
    try:
        os.chmod(target, os.stat(source).st_mode & 0o7777)
    except OSError:
        pass


def _check_map_location(map_location: object) -> None:
    """Reject a ``map_location`` that is not a device, or a CUDA device this machine lacks, before
    loading: torch's own error would otherwise read as a corrupted file. A dict or a function
    (torch.load's other forms) is passed through unchecked."""
    if isinstance(map_location, dict) or callable(map_location):
        return
    try:
        device = torch.device(map_location)  # type: ignore[call-overload]
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"map_location must be a device such as 'cpu' or 'cuda:0', got {map_location!r}"
        ) from None
    if device.type == "cuda" and (
        not torch.cuda.is_available()
        or (device.index is not None and device.index >= torch.cuda.device_count())
    ):
        raise ValueError(
            f"map_location={map_location!r} but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); pass map_location='cpu'"
        )


def load(path: str | os.PathLike[str], map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save``, without executing any pickled code.

    Raises:
        CheckpointError: the file is missing, truncated, corrupted, or holds objects other than
            tensors and plain containers (a possible code-execution payload).
        ValueError: ``map_location`` is not a device, or a CUDA device this machine lacks.
    """
    path = os.fspath(path)
    _check_map_location(map_location)
    if os.path.isdir(path):
        raise CheckpointError(
            f"checkpoint {path!r} is a folder, not a file; pass the file inside it, e.g. "
            f"{os.path.join(path, 'checkpoint.pt')!r}"
        )
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path!r} could not be loaded safely ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no detail'}); it is truncated, corrupted, "
            "or holds pickled objects that weights_only loading refuses. Delete it to start over, "
            "or resume from an older copy."
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(state).__name__}, not a dict")
    return state
