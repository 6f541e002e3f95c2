"""The cache's own error: user-facing, raised for a cache that is absent, damaged, locked or
built with other settings. The command line prints its message as one line (exit status 2)."""

from __future__ import annotations


class CacheError(Exception):
    """A user-facing cache problem; its message is complete and printed as is."""
