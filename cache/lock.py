"""An exclusive, crash-proof lock on a cache being written.

``flock`` is used because the kernel releases it when the holder dies, SIGKILL included, so a
stale lock file never blocks a rerun. Two subtleties:

- A forked child (a DataLoader worker) inherits the descriptor and with it the lock; were the
  parent killed, orphaned workers would keep the lock for seconds. :meth:`HeldLock.close_in_child`
  closes the child's copy (the parent still holds the lock through its own descriptor).
- The lock file is removed when the holder finishes. A process that opened the file just
  before the removal could lock the dead inode, so after locking we check that the path still
  names the inode we hold, and start over when it does not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from umt.cache.errors import CacheError


def lock_path(out: Path) -> Path:
    """The lock file guarding ``out``: ``<out>.lock`` beside it."""
    return out.with_name(out.name + ".lock")


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return "another process"
    return f"process {pid}" if pid else "another process"


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


@contextlib.contextmanager
def exclusive_lock(out: Path) -> Iterator[HeldLock]:
    """Hold ``<out>.lock`` for the block; raise :class:`CacheError` at once if someone else does."""
    path = lock_path(out)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CacheError(f"cannot create the lock file {path}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CacheError(
                f"{out} is being written by {_holder(path)} (lock {path}); wait for it to finish. "
                "Only one process may write a cache; use --shard K/N to split the work."
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
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
        path.unlink(missing_ok=True)
        os.close(fd)
