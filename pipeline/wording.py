"""How messages say things: one place for the plural of a count."""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 post``, ``2 posts``; ``plural`` for a noun whose plural is not ``noun + 's'``."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
