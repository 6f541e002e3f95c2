"""Word-level predictions for whole posts: decode windows, then merge them back.

A long post is split into overlapping windows; each word's tag comes from the one window that
owns it (``WindowRef.keep_from``/``keep_to``), so every word of every post gets exactly one tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from umt.pipeline.batch import Batch, WindowRef
from umt.pipeline.labels import LabelVocab


class WindowMerge:
    """One tag per word of each post, each taken from the window that owns the word."""

    def __init__(self, post_lengths: Sequence[int]):
        self.tags: list[list[str | None]] = [[None] * n for n in post_lengths]

    def add(self, ref: WindowRef, labels: Sequence[str]) -> None:
        """The labels of a window's words; only those in its kept range are used."""
        for i in range(ref.keep_from, ref.keep_to):
            self.tags[ref.post][ref.offset + i] = labels[i]

    def result(self) -> list[list[str]]:
        missing = [(p, i) for p, row in enumerate(self.tags) for i, t in enumerate(row) if t is None]
        if missing:
            raise RuntimeError(f"{len(missing)} words received no prediction (first: post {missing[0][0]})")
        return self.tags  # type: ignore[return-value]


@torch.inference_mode()
def predict_posts(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    n_posts: int,
    post_lengths: list[int],
    vocab: LabelVocab,
    device: torch.device,
) -> list[list[str]]:
    """Tags for each of ``n_posts`` posts (``post_lengths[i]`` words each)."""
    was_training = model.training
    model.eval()
    merge = WindowMerge(post_lengths[:n_posts])
    for batch in batches:
        decoded = model.decode(batch.to(device))
        for ref, ids in zip(batch.refs, decoded, strict=True):
            merge.add(ref, vocab.decode(ids))
    model.train(was_training)
    return merge.result()
