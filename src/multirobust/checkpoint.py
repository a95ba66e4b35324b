"""Checkpoints that survive a crash, detect corruption, and never execute code when loaded.

``save`` writes to a temporary file in the same folder, flushes it to disk and renames it over the
target, so a process killed mid-write leaves the previous checkpoint intact. ``load`` uses
``torch.load(weights_only=True)``: a crafted pickle is refused, and a truncated or corrupted file
raises ``CheckpointError`` naming the file. Error messages never suggest unsafe loading.

The file is itself a plain ``torch.save`` file holding three entries: ``"multirobust_checkpoint"``
(the format, ``2``), ``"payload"`` (a 1-D uint8 tensor: the bytes ``torch.save(state)`` wrote) and
``"sha256"`` (the SHA-256 digest of those bytes, in hex). ``load`` maps the file into memory, checks
the digest, then reads ``state`` from the payload, so it returns exactly the dict that was saved
and a single changed byte anywhere in the payload is caught. Saving holds the state and its bytes
(about two copies); loading holds the state and the mapped file. Checkpoints written before the
digest (a bare ``torch.save`` of the state) still load, with a warning that they cannot be
verified; saving them again adds the digest.

Examples:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/last.pt"
    >>> save(path, {"epoch": 3, "w": torch.ones(2)})
    >>> load(path)["epoch"]
    3
    >>> sorted(torch.load(path, weights_only=True))
    ['multirobust_checkpoint', 'payload', 'sha256']
"""

import errno
import hashlib
import hmac
import io
import os
import pickle
import secrets
import stat
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO

import torch

_FORMAT_KEY, _FORMAT = "multirobust_checkpoint", 2
_ZIP_MAGIC = b"PK\x03\x04"  # every torch.save file since torch 1.6 is a zip archive
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_DAMAGED = "Delete it to start over, or resume from an older copy."


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or unsafe to load."""


def save(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, rename), with its digest.

    Raises:
        TypeError: ``state`` is not a dict (``load`` only returns dicts).
        ValueError: ``path`` is a symbolic link or not a regular file (see ``write_atomic``).
        OSError: the disk is full (``errno.ENOSPC``); the previous checkpoint is kept.
    """
    if not isinstance(state, dict):
        raise TypeError(
            f"state must be a dict (e.g. {{'model': model.state_dict()}}), got "
            f"{type(state).__name__}; load() refuses anything else"
        )
    _check_target(os.fspath(path))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    view = buffer.getbuffer()  # no copy: the payload tensor shares these bytes
    record = {
        _FORMAT_KEY: _FORMAT,
        "sha256": hashlib.sha256(view).hexdigest(),
        "payload": torch.frombuffer(view, dtype=torch.uint8),
    }
    write_atomic(path, lambda f: torch.save(record, f))


def write_atomic(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> None:
    """Create or replace the file ``path`` whole or not at all: ``write(f)`` fills a temporary
    file in the same folder, which is flushed to disk and renamed over ``path``. The file gets
    the mode a plain ``open(path, "w")`` would give it (a replaced file keeps its own).

    Raises:
        IsADirectoryError: ``path`` is a folder.
        ValueError: ``path`` is a symbolic link (renaming would replace the link, not write
            through it) or exists but is not a regular file (a FIFO, a device, a socket).
        OSError: the disk is full (``errno.ENOSPC``, naming the folder); the temporary file is
            removed and a previous file at ``path`` is kept.

    Examples:
        >>> import json, tempfile
        >>> path = tempfile.mkdtemp() + "/results.json"
        >>> write_atomic(path, lambda f: f.write(json.dumps({"acc": 0.9}).encode()))
        >>> open(path).read()
        '{"acc": 0.9}'
    """
    path = os.fspath(path)
    _check_target(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _new_temporary(folder, os.path.splitext(path)[1])
    recorder = None
    try:
        with os.fdopen(fd, "wb") as f:
            recorder = _Recorder(f)
            write(recorder)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        _copy_mode(path, tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause, torch_short = _write_failure(e, recorder)
        name = os.path.basename(path)
        if cause is None and not torch_short:
            raise
        code = errno.ENOSPC if cause is None else (cause.errno or errno.EIO)
        if code in _DISK_FULL:  # torch stopping short with no error of its own: the usual cause
            raise OSError(
                code,
                f"the disk holding {folder!r} is full: could not write {name!r} there "
                f"({os.strerror(code)}). Free some space or write to another disk; the "
                "temporary file was removed and any previous file at that path is unchanged",
            ) from e
        if not torch_short:
            raise
        raise OSError(  # the OSError torch's 'unexpected pos' hides
            code,
            f"could not write {name!r} in {folder!r} ({cause}); the temporary file was "
            "removed and any previous file at that path is unchanged",
        ) from e


class _Recorder:
    """The file handed to ``write``: forwards everything, and keeps the ``OSError`` a write
    raised, which torch's writer swallows (reporting ``unexpected pos`` instead)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _write_failure(e: BaseException, recorder: _Recorder | None) -> tuple[OSError | None, bool]:
    """The ``OSError`` behind ``e`` (raised by a write, or in ``e``'s chain; one saying the disk
    is full first), and whether torch's writer reported ``unexpected pos`` (a write stopped
    short)."""
    seen = [] if recorder is None or recorder.error is None else [recorder.error]
    link: BaseException | None = e
    while link is not None and all(link is not s for s in seen):
        seen.append(link)
        link = link.__cause__ or link.__context__
    errors = [err for err in seen if isinstance(err, OSError)]
    errors.sort(key=lambda err: err.errno not in _DISK_FULL)
    short = any(isinstance(err, RuntimeError) and "unexpected pos" in str(err) for err in seen)
    return (errors[0] if errors else None), short


def _check_target(path: str) -> None:
    """Refuse, before any work, a target that renaming a new file over would silently damage."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISLNK(mode):
        raise ValueError(
            f"{path} is a symbolic link to {os.readlink(path)}; writing would replace the link "
            "with a regular file, not write through it. Pass the link's target, "
            f"{os.path.realpath(path)}, or remove the link"
        )
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a folder; pass a file's path, e.g. {path}/state.pt")
    if not stat.S_ISREG(mode):
        raise ValueError(
            f"{path} is not a regular file ({_kind(mode)}); writing would rename a regular file "
            "over it. Pass the path of a regular file, e.g. "
            f"{os.path.join(os.path.dirname(path) or '.', 'checkpoint.pt')}"
        )


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a file"


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
    """Read a checkpoint written by ``save``, check its digest, without executing pickled code.

    Raises:
        CheckpointError: the file is missing, not a regular file, not a checkpoint, truncated,
            corrupted (its digest does not match), or holds objects other than tensors and
            plain containers (a possible code-execution payload).
        ValueError: ``map_location`` is not a device, or a CUDA device this machine lacks.

    Warns:
        UserWarning: the checkpoint has no digest (written before this format); it loads
            unverified.
    """
    path = os.fspath(path)
    _check_map_location(map_location)
    _check_source(path)
    try:  # mapped, not read: the payload is hashed and parsed from the page cache
        outer = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise _unreadable(path, e) from e
    if not isinstance(outer, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(outer).__name__}, not a dict")
    if _FORMAT_KEY in outer:
        state = _unwrap(path, outer, map_location)
    else:
        del outer
        warnings.warn(
            f"checkpoint {path!r} has no digest (written before checkpoints carried one), so "
            "corruption inside it cannot be detected; save it again to add one",
            stacklevel=2,
        )
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as e:
            raise _unreadable(path, e) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(state).__name__}, not a dict")
    return state


def _check_source(path: str) -> None:
    """Refuse, before torch reads it, a path that is no checkpoint file at all."""
    if os.path.isdir(path):
        raise CheckpointError(
            f"checkpoint {path!r} is a folder, not a file; pass the file inside it, e.g. "
            f"{os.path.join(path, 'checkpoint.pt')!r}"
        )
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise CheckpointError(
            f"checkpoint {path!r} is not a regular file ({_kind(mode)}); pass the path of the "
            "file checkpoint.save wrote"
        )
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    if not head:
        raise CheckpointError(f"checkpoint {path!r} is empty (truncated to nothing). {_DAMAGED}")
    if head != _ZIP_MAGIC:
        raise CheckpointError(
            f"{path!r} is not a checkpoint: it lacks the zip header that every file written by "
            "checkpoint.save (or torch.save) starts with. Check the path; if it is a checkpoint, "
            f"its first bytes are damaged. {_DAMAGED}"
        )


def _unwrap(path: str, outer: dict[str, Any], map_location: Any) -> Any:
    """The state inside a digest-carrying checkpoint, once its digest has been checked."""
    payload, digest = outer.get("payload"), outer.get("sha256")
    if (
        outer[_FORMAT_KEY] != _FORMAT
        or set(outer) != {_FORMAT_KEY, "payload", "sha256"}
        or not isinstance(digest, str)
        or not isinstance(payload, torch.Tensor)
        or payload.dtype != torch.uint8
        or payload.dim() != 1
        or not payload.is_contiguous()
    ):
        raise CheckpointError(
            f"checkpoint {path!r} has an unknown layout (format {outer[_FORMAT_KEY]!r}; this "
            f"version reads format {_FORMAT}): written by a newer multirobust, or damaged. "
            "Upgrade multirobust, or resume from an older copy"
        )
    view = memoryview(payload.numpy())  # the mapped bytes themselves, not a copy
    if not hmac.compare_digest(hashlib.sha256(view).hexdigest(), digest):
        raise CheckpointError(
            f"checkpoint {path!r} is corrupted: the SHA-256 digest of its contents does not "
            "match the one stored when it was saved (bytes changed on disk or in a copy since). "
            f"{_DAMAGED}"
        )
    try:
        return torch.load(_Reader(view), map_location=map_location, weights_only=True)
    except Exception as e:
        raise _unreadable(path, e) from e


class _Reader(io.RawIOBase):
    """A read-only file over a memoryview: torch reads each record straight into its tensor."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view, self._pos = view, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        chunk = self._view[self._pos : self._pos + len(out)]
        out[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


_UNSAFE_HINTS = (
    "weights_only",
    "weights only",
    "safe_globals",
    "trust",
    "please file an issue",
    "documentation",
)


def _safe_detail(e: BaseException) -> str:
    """torch's message without its advice to load unsafely (or to allowlist what it refused)."""
    text = str(e).replace("WeightsUnpickler error:", "")
    sentences = [s.strip() for s in text.replace("\n", " ").split(". ")]
    kept = [s for s in sentences if s and not any(h in s.lower() for h in _UNSAFE_HINTS)]
    detail = kept[0].rstrip(".") if kept else "no detail"  # the rest is torch's advice
    return detail if len(detail) <= 300 else detail[:297] + "..."


def _unreadable(path: str, e: BaseException) -> CheckpointError:
    detail = f"{type(e).__name__}: {_safe_detail(e)}"
    if isinstance(e, pickle.UnpicklingError) or "Weights only load failed" in str(e):
        return CheckpointError(
            f"checkpoint {path!r} could not be loaded safely ({detail}): it holds pickled "
            "objects other than tensors and plain containers, which could run code and are "
            "refused, or its bytes are damaged. checkpoint.save writes neither: if the file is "
            f"yours, save the state again as tensors, numbers, strings, lists and dicts. {_DAMAGED}"
        )
    return CheckpointError(
        f"checkpoint {path!r} could not be read ({detail}); it is truncated, corrupted, or not "
        f"a checkpoint. {_DAMAGED}"
    )


def load_model(
    path: str | os.PathLike[str], model: torch.nn.Module, map_location: Any = "cpu"
) -> torch.nn.Module:
    """Load a trained model's weights from a checkpoint into ``model``, and return it in eval mode.

    ``path`` may hold a recipe run's checkpoint (``runs/.../checkpoint.pt``, the Trainer's state
    under ``"trainer"``), a ``Trainer.state_dict()`` saved with ``save``, or a model's own
    ``state_dict()`` saved with ``save``.

    Raises:
        CheckpointError: the file is not a checkpoint (see ``load``), or holds no model weights.
        ValueError: the weights are of another architecture than ``model`` (nothing is loaded).

    Examples:
        >>> import tempfile, torch
        >>> path = tempfile.mkdtemp() + "/model.pt"
        >>> save(path, {"model": torch.nn.Linear(2, 2).state_dict()})
        >>> load_model(path, torch.nn.Linear(2, 2)).training
        False
    """
    from multirobust._state import check_same_model

    state = load(path, map_location)
    weights: Any = state.get("trainer", state)
    if isinstance(weights, dict) and isinstance(weights.get("model"), dict):
        weights = weights["model"]
    if not weights or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise CheckpointError(
            f"checkpoint {os.fspath(path)!r} holds no model weights (keys: {sorted(state)[:6]}); "
            "pass a recipe's checkpoint.pt, a saved Trainer.state_dict() or a model's state_dict()"
        )
    check_same_model(weights, model.state_dict())
    model.load_state_dict(weights)
    return model.eval()
