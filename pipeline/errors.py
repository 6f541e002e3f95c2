"""Errors that the CLI reports as one line, without a traceback.

Anything the user can fix (a malformed file, a missing path, a cache built with other
settings) raises a subclass of :class:`UmtError`; ``cli.main`` prints its message and exits
with status 2. Programming errors stay ordinary exceptions and keep their tracebacks.
"""

from __future__ import annotations

from pathlib import Path


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


class CacheError(UmtError):
    """A feature cache that is absent, not a umt cache, or built with other settings."""


class ConfigError(UmtError):
    """Bad options or a run directory / model that cannot be loaded."""
