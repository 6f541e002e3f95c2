"""Durable file writes (a file appears complete or not at all, even across a crash), and file
access that does not follow links planted by others.

The one atomic writer of the project (the cache's work files and every run-directory file go
through it): write a unique temporary sibling, flush and fsync it, ``os.replace`` it over the
target, fsync the folder. The temporary file is created with mode 0o666 filtered by the umask,
like any file ``open`` creates, so atomically written files get the same permissions as the
others (``tempfile.mkstemp`` would make them 0600). A Ctrl-C during the write takes effect once
the write is complete (:func:`interrupts_deferred`): a library writer stopped half-way, such as
``torch.save``'s zip writer, may turn the KeyboardInterrupt into its own error.

Folders umt writes into or reads from may have been prepared by someone else (a run directory
received from a colleague, a shared output folder). :func:`read_regular`, :func:`open_regular`
and :func:`open_append` therefore never follow a symbolic link in the last path component,
accept only regular files (a FIFO would block, ``/dev/zero`` would never end) and, for reads,
check the size before reading. The atomic writer never follows one either: its temporary file is
created with ``O_EXCL`` and the rename replaces a link rather than writing through it.
"""

from __future__ import annotations

import os
import secrets
import signal
import stat
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


def temporary_target(name: str) -> str | None:
    """The file name an :func:`atomic_write` temporary file stands for (``.a.json.tmp-1f2e3d4c`` ->
    ``a.json``), or None when ``name`` is not one."""
    if not name.startswith(".") or TMP_TAG not in name:
        return None
    return name[1:].rsplit(TMP_TAG, 1)[0]


def remove_owned(folder: Path, owned: Callable[[str], bool], *, and_folder: bool = False) -> None:
    """Remove the regular files of ``folder`` whose names ``owned`` accepts (and the temporary files
    of those names), then, with ``and_folder``, ``folder`` itself if nothing else is left.

    The one way umt deletes a folder's contents: nothing is ever removed recursively, a symbolic
    link or a sub-folder is never touched, so only files umt writes (as its caller knows them by
    name) can go, whatever else someone has put there. OSErrors propagate.
    """
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.is_file(follow_symlinks=False)]
    for name in names:
        target = temporary_target(name)
        if owned(name) or (target is not None and owned(target)):
            (folder / name).unlink(missing_ok=True)
    if and_folder:
        try:
            folder.rmdir()
        except OSError:  # something that is not ours is left in it: so is the folder
            pass


class UnsafeFile(OSError):
    """A path that is a symbolic link or not a regular file, or a file over its size limit; the
    message says which, without the path (``f"cannot read {path}: {error}"``)."""


MIB = 1 << 20


def size_text(size: int) -> str:
    """A file size as a person reads it: MiB from one MiB on, else bytes."""
    return f"{size / MIB:.1f} MiB" if size >= MIB else f"{size:,} bytes"


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = FILE_MODE, *, follow_links: bool = False) -> int:
    """A descriptor of the regular file ``path`` opened with ``flags``: :class:`UnsafeFile` for a
    symbolic link in the last component (unless ``follow_links``) and for anything but a regular
    file (checked once open, so a FIFO cannot block and a file swapped in is still caught); other
    OSErrors (no such file, permission) propagate."""
    nofollow = 0 if follow_links else os.O_NOFOLLOW
    try:
        fd = os.open(path, flags | nofollow | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if not follow_links and Path(path).is_symlink():
            raise UnsafeFile("it is a symbolic link; umt does not follow links here") from e
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeFile("it is not a regular file")
    os.set_blocking(fd, True)  # O_NONBLOCK was only there so that opening a FIFO cannot hang
    return fd


def read_open(fd: int, limit: int, what: str = "this file") -> bytes:
    """The bytes of the open regular file ``fd``, refused above ``limit`` bytes before reading
    (and if it grew past it meanwhile); ``what`` names the file in the message."""
    size = os.fstat(fd).st_size
    if size <= limit:
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
        size = len(data)
    if size > limit:
        raise UnsafeFile(f"it is {size_text(size)}, over the {size_text(limit)} limit for {what}")
    return data


def read_regular(path: Path, limit: int, *, follow_links: bool = False, what: str = "this file") -> bytes:
    """The bytes of the regular file ``path`` (see :func:`open_regular`), at most ``limit`` of them."""
    fd = open_regular(path, follow_links=follow_links)
    try:
        return read_open(fd, limit, what)
    finally:
        os.close(fd)


def open_append(path: Path) -> IO[str]:
    """``path`` opened for appending UTF-8 text (created if absent), never through a link."""
    fd = open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "a", encoding="utf-8")
