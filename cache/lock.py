"""Exclusive, crash-proof locks: one on a cache being written, one on a run directory being trained.

``flock`` is used because the kernel releases it when the holder dies, SIGKILL included, so a
stale lock file never blocks a rerun. Three subtleties:

- A forked child (a DataLoader worker) inherits the descriptor and with it the lock; were the
  parent killed, orphaned workers would keep the lock for seconds. :meth:`HeldLock.close_in_child`
  closes the child's copy (the parent still holds the lock through its own descriptor).
- The lock file is removed when the holder finishes. A process that opened the file just
  before the removal could lock the dead inode, so after locking we check that the path still
  names the inode we hold, and start over when it does not.
- The lock file may sit in a folder someone else prepared: it is opened without following a
  symbolic link (a link planted there would otherwise have its target truncated) and must be a
  regular file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from umt.cache.durable import UnsafeFile, open_regular, read_regular
from umt.cache.errors import CacheError

LOCK_MODE = 0o644
#: More than a process id and its line end.
PID_BYTES = 32


def lock_path(out: Path) -> Path:
    """The lock file guarding the cache ``out``: ``<out>.lock`` beside it."""
    return out.with_name(out.name + ".lock")


def holder(path: Path) -> str:
    """Who holds the lock file ``path``, as a person reads it (``process 1234``)."""
    try:
        pid = read_regular(path, PID_BYTES).decode("ascii", "replace").strip()
    except OSError:
        return "another process"
    return f"process {pid}" if pid.isdigit() else "another process"


@dataclass(frozen=True)
class HeldLock:
    fd: int
    device: int
    inode: int

    def close_in_child(self) -> None:
        """Close a forked child's inherited copy of the lock descriptor (the parent keeps the lock).

        The descriptor number is checked to still name the lock file, because a child started
        by spawn or forkserver inherits nothing and the number may be another file there.
        """
        with contextlib.suppress(OSError):
            info = os.fstat(self.fd)
            if (info.st_dev, info.st_ino) == (self.device, self.inode):
                os.close(self.fd)


def _open_lock_file(path: Path, error: type[Exception]) -> int:
    try:
        return open_regular(path, os.O_RDWR | os.O_CREAT, LOCK_MODE)
    except UnsafeFile as e:
        raise error(f"cannot use the lock file {path}: {e}; remove it") from None
    except OSError as e:
        raise error(f"cannot create the lock file {path}: {e.strerror}") from None


@contextlib.contextmanager
def file_lock(path: Path, busy: Callable[[str], str], error: type[Exception]) -> Iterator[HeldLock]:
    """Hold the lock file ``path`` for the block; raise ``error(busy(holder))`` at once if someone
    else holds it, ``error`` too when the file cannot be created. Removed when the block ends."""
    while True:
        fd = _open_lock_file(path, error)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise error(busy(holder(path))) from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # we locked a file its holder had just removed; lock the current one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        info = os.fstat(fd)
        yield HeldLock(fd, info.st_dev, info.st_ino)
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        os.close(fd)


def exclusive_lock(out: Path) -> contextlib.AbstractContextManager[HeldLock]:
    """Hold ``<out>.lock`` for the block; raise :class:`CacheError` at once if someone else does."""
    return file_lock(
        lock_path(out),
        lambda who: (
            f"{out} is being written by {who} (lock {lock_path(out)}); wait for it to finish. "
            "Only one process may write a cache; use --shard K/N to split the work."
        ),
        CacheError,
    )
