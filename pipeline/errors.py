"""Errors that the CLI reports as one line, without a traceback.

Anything the user can fix (a malformed file, a missing path, a bad option) raises a subclass
of :class:`UmtError`; a cache problem raises the storage layer's own
:class:`umt.cache.errors.CacheError` (re-exported here, since ``umt.cache`` imports nothing of
the library). ``cli.main`` prints either as one line and exits with status 2. Programming
errors stay ordinary exceptions and keep their tracebacks.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from umt.cache.errors import CacheError


class UmtError(Exception):
    """A user-facing error: its message is complete and printed as is."""


class DataFormatError(UmtError):
    """Malformed input data; the message names the file and the 1-based line number."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(UmtError):
    """Bad options or a run directory / model that cannot be loaded."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to ``name`` (case, ``_`` and ``-`` aside), or ""."""
    spelled = {k.lower().replace("_", "-"): k for k in known}
    key = name.lower().replace("_", "-")
    close = [key] if key in spelled else difflib.get_close_matches(key, list(spelled), n=1, cutoff=0.6)
    return f" (did you mean {spelled[close[0]]!r}?)" if close else ""


#: Every error the command line reports as one line.
USER_ERRORS = (UmtError, CacheError)

__all__ = ["USER_ERRORS", "CacheError", "ConfigError", "DataFormatError", "UmtError", "did_you_mean"]
