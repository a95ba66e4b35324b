"""One run per ``--out`` at a time: an OS lock on a file inside the folder, held until the run
ends (the OS drops it when the process dies, SIGKILL included).

Examples:
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> claim_out(out) is None  # taken
    True
    >>> claim_out(out)  # doctest: +ELLIPSIS
    '--out ... is in use by another run (pid ...); wait for it or pick another --out'
    >>> release_out(out)
"""

import fcntl
import os
from collections.abc import Callable

LOCK_FILE = "run.lock"
"""The lock's file inside ``--out``; it holds the pid of the run that last took the folder."""

_held: dict[str, int] = {}  # the real path of each --out this process holds -> the lock's fd


def claim_out(
    out: str | os.PathLike[str], problem: Callable[[], str | None] | None = None
) -> str | None:
    """Take ``out`` for this process's run, or say why not.

    ``out`` is made if missing and locked (``fcntl.flock`` on ``out/run.lock``); ``problem``,
    the recipe's own check of the folder (a finished run without ``--resume``, say), runs before
    anything is made and again once the lock is held, so a run that finished meanwhile is seen.
    The lock lasts until ``release_out(out)`` or the end of the process.

    Args:
        out: the run's folder.
        problem: returns why ``out`` cannot take this run, or ``None``.

    Returns:
        ``None`` once the lock is held; otherwise a message naming ``--out`` and the fix: a file,
        a folder that cannot be made or written, one another run holds (with its pid), or what
        ``problem`` said (then nothing is held).
    """
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        return f"--out {out} is a file, not a folder"
    if problem is not None and not os.path.isdir(out):
        why = problem()
        if why:
            return why
    try:
        os.makedirs(out, exist_ok=True)
        fd = os.open(os.path.join(out, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        return (
            f"--out {out} cannot be written ({type(e).__name__}: {e.strerror or e}); pick a "
            "folder you can write to, or make this one writable"
        )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return (
            f"--out {out} is in use by another run (pid {pid}); wait for it or pick another --out"
        )
    why = problem() if problem is not None else None
    if why:
        os.close(fd)  # closing the only descriptor drops the lock
        return why
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[os.path.realpath(out)] = fd
    return None


def release_out(out: str | os.PathLike[str]) -> None:
    """Let another run take ``out`` (a no-op if this process does not hold it)."""
    fd = _held.pop(os.path.realpath(os.fspath(out)), None)
    if fd is not None:
        os.close(fd)
