"""Word-level predictions for whole posts: decode windows, then merge them back.

A long post is split into overlapping windows; each word's tag comes from the one window that
owns it (``WindowRef.keep_from``/``keep_to``), so every word of every post gets exactly one tag.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from umt.pipeline.batch import Batch
from umt.pipeline.labels import LabelVocab


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
    tags: list[list[str | None]] = [[None] * post_lengths[i] for i in range(n_posts)]
    for batch in batches:
        decoded = model.decode(batch.to(device))
        for ref, ids in zip(batch.refs, decoded, strict=True):
            labels = vocab.decode(ids)
            for i in range(ref.keep_from, ref.keep_to):
                tags[ref.post][ref.offset + i] = labels[i]
    model.train(was_training)
    missing = [(p, i) for p, row in enumerate(tags) for i, t in enumerate(row) if t is None]
    if missing:
        raise RuntimeError(f"{len(missing)} words received no prediction (first: post {missing[0][0]})")
    return tags  # type: ignore[return-value]
