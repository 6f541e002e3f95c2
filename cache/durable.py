"""Durable file writes: a file appears complete or not at all, even across a crash.

The one atomic writer of the project (the cache's work files and every run-directory file go
through it): write a unique temporary sibling, flush and fsync it, ``os.replace`` it over the
target, fsync the folder. The temporary file is created with mode 0o666 filtered by the umask,
like any file ``open`` creates, so atomically written files get the same permissions as the
others (``tempfile.mkstemp`` would make them 0600).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO

TMP_TAG = ".tmp-"
FILE_MODE = 0o666  # filtered by the umask, as open() does


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(handle)``; OSError (full disk, read-only folder) propagates.

    On any failure, including KeyboardInterrupt, the temporary file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_TAG}{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda handle: handle.write(data))
