"""The in-memory record every reader produces."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Post:
    """One post: its words, their BIO2 labels (None when unlabelled) and its image reference.

    ``image`` is an image id (resolved against an image folder) or a path, or None for a post
    without an image. ``origin`` is ``"<file>:<line>"`` of the post's first line, for messages.
    """

    tokens: list[str]
    labels: list[str] | None
    image: str | None
    origin: str = ""

    def __len__(self) -> int:
        return len(self.tokens)
