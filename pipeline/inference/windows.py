"""Word-level predictions for whole posts: decode windows, then merge them back.

A long post is split into overlapping windows; each word's tag comes from the one window that
owns it (``Placement.owned``), so every word of every post gets exactly one tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch

from umt.pipeline.batch import Batch, WindowRef
from umt.pipeline.labels import LabelVocab


class WindowMerge:
    """One tag per word of each post, each taken from the window that owns the word."""

    def __init__(self, post_lengths: Sequence[int]):
        self.tags: list[list[str | None]] = [[None] * n for n in post_lengths]

    def add(self, ref: WindowRef, labels: Sequence[str]) -> None:
        """The labels of a window's words; only those in its kept range are used."""
        for word in ref.place.owned:
            self.tags[ref.post][word] = labels[word - ref.place.offset]

    def result(self) -> list[list[str]]:
        missing = [(p, i) for p, row in enumerate(self.tags) for i, t in enumerate(row) if t is None]
        if missing:
            raise RuntimeError(f"{len(missing)} words received no prediction (first: post {missing[0][0]})")
        return self.tags  # type: ignore[return-value]


@contextmanager
def tagging_mode(model: torch.nn.Module, device: torch.device | str) -> Iterator[torch.nn.Module]:
    """``model`` set up to tag for the block, as it was after it:

    - in eval mode, and back in training mode after if it was. A model already in eval mode (a
      loaded run, every batch a server tags) is left as it is: walking its modules twice per
      batch cost a served batch of 16 posts about 2 ms;
    - on a CPU, on torch's own kernels instead of oneDNN's. oneDNN compiles a kernel for every
      tensor shape it meets and keeps up to 1,024 of them: GELU's took 0.45 MB a shape, so a
      server tagging batches of every length and size grew by hundreds of MB (a process tagging
      random batches of the Twitter-2017 test posts: +125 MB in 19 passes and still growing;
      with this, +2 MB). The encoders run as fast without (BERT-sized and MiniLM-sized, batches
      of 16 and 64: within 3%). Training and image features keep oneDNN.
    """
    was_training = model.training
    if was_training:
        model.eval()
    on_cpu = torch.device(device).type == "cpu"
    onednn = torch.backends.mkldnn.enabled  # only this flag: mkldnn.flags() also sets TF32 ones, and warns
    if on_cpu:
        torch.backends.mkldnn.enabled = False
    try:
        yield model
    finally:
        if on_cpu:
            torch.backends.mkldnn.enabled = onednn
        if was_training:
            model.train()


@torch.inference_mode()
def decode_windows(
    model: torch.nn.Module, batches: Iterable[Batch], vocab: LabelVocab, device: torch.device
) -> list[tuple[WindowRef, list[str]]]:
    """Each window of ``batches`` with the labels of its words."""
    out = []
    with tagging_mode(model, device):
        for batch in batches:
            decoded = model.decode(batch.to(device))
            out.extend((ref, vocab.decode(ids)) for ref, ids in zip(batch.refs, decoded, strict=True))
    return out


def merge_windows(post_lengths: Sequence[int], windows: Iterable[tuple[WindowRef, Sequence[str]]]) -> list[list[str]]:
    """The tags of each post (``post_lengths[i]`` words) from its windows' labels."""
    merge = WindowMerge(post_lengths)
    for ref, labels in windows:
        merge.add(ref, labels)
    return merge.result()
