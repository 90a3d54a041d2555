"""One writer at a time: an exclusive lock that the kernel releases when its holder dies.

The lock is ``fcntl.flock`` on a lock file (``DIR/.lock`` for a run directory). A process that
exits in any way (a crash, SIGKILL) drops it, so no stale lock is ever left to clean up. The
holder writes its pid into the file so that a refused process can say who holds it. Within one
process the lock is re-entrant: the sweep's worker holds a run directory's lock while
``decaylab train`` takes it again for the same run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from decaylab.errors import DecaylabError

LOCK_FILE = ".lock"

_held: dict[Path, int] = {}  # lock file → how many times this process has entered it


class Locked(DecaylabError):
    """Another process holds the lock."""


def holder_pid(lock_file: str | Path) -> int | None:
    """The pid recorded by the last process that took ``lock_file`` (None if unknown)."""
    try:
        return int(Path(lock_file).read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def exclusive_lock(lock_file: str | Path, wait: bool = False) -> Iterator[None]:
    """Hold ``lock_file`` (created, with its directory, if missing) for the ``with`` block.

    ``wait=True`` blocks until the holder finishes; ``wait=False`` raises :class:`Locked` naming
    the holder's pid at once."""
    path = Path(lock_file).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            pid = holder_pid(path)
            raise Locked(
                f"{path.parent} is in use by another process (pid {pid if pid is not None else 'unknown'}, "
                f"holding {path.name}); wait for it to finish, or use another directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
    finally:
        os.close(fd)  # closing the descriptor releases the lock
