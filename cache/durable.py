"""Durable file writes: a file appears complete or not at all, even across a crash.

The one atomic writer of the project (the cache's work files and every run-directory file go
through it): write a unique temporary sibling, flush and fsync it, ``os.replace`` it over the
target, fsync the folder. The temporary file is created with mode 0o666 filtered by the umask,
like any file ``open`` creates, so atomically written files get the same permissions as the
others (``tempfile.mkstemp`` would make them 0600). A Ctrl-C during the write takes effect once
the write is complete (:func:`interrupts_deferred`): a library writer stopped half-way, such as
``torch.save``'s zip writer, may turn the KeyboardInterrupt into its own error.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

TMP_TAG = ".tmp-"
FILE_MODE = 0o666  # filtered by the umask, as open() does

_deferring = False  # inside an interrupts_deferred block (of the main thread)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block to its end even if Ctrl-C (SIGINT) arrives; then act on the Ctrl-C.

    The interrupt is handed, once the block is over, to the handler that was in place (Python's
    default raises KeyboardInterrupt there). Nested blocks defer to the outermost one. Signals
    reach only the main thread, so elsewhere this does nothing.
    """
    global _deferring
    if _deferring or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    _deferring = True
    try:
        yield
    finally:
        _deferring = False
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if pending:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt


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

    On any failure the temporary file is removed and ``path`` is left as it was. A Ctrl-C while
    writing is raised after the file is in place.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_TAG}{secrets.token_hex(4)}")
    with interrupts_deferred():
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
