"""The batch: the one contract between data, models and the trainer.

A post is tokenised into one or more *windows* (a long post is split, see
``pipeline.data.align``). A batch holds windows. Everything is word-level except the
sub-word tensors: ``word_index`` says where each word's first piece sits, so a model gathers
word vectors from piece vectors and runs its CRF over words.

Text-only encoders that need no sub-words (BiLSTM over GloVe, character encoders) read
``words``; fusions read ``image``/``image_mask``. Fields a model does not use are ignored, so
new encoders and fusions slot in without touching the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch


@dataclass(frozen=True)
class WindowRef:
    """Where a window's words come from, for merging predictions back into posts.

    ``post``: index of the post in its dataset; ``offset``: index (in the post) of the
    window's first word; ``keep_from``/``keep_to``: the window-relative word range whose
    predictions this window owns (the others are context, owned by a neighbour window).
    """

    post: int
    offset: int
    keep_from: int
    keep_to: int


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) long, sub-word ids incl. [CLS]/[SEP]
    attention_mask: torch.Tensor  # (B, L) long, 1 for real pieces
    word_index: torch.Tensor  # (B, W) long, piece position of each word's first piece (0 on padding)
    word_mask: torch.Tensor  # (B, W) bool, True for real words
    labels: torch.Tensor | None  # (B, W) long NER label ids (0 on padding); None when unlabelled
    esd_labels: torch.Tensor | None  # (B, W) long ESD label ids (0 on padding)
    image: torch.Tensor | None  # (B, 49, 2048) float visual grid; None for text-only data
    image_mask: torch.Tensor  # (B,) bool, True where the post has a usable image
    words: list[list[str]] = field(default_factory=list)  # raw words of each window
    refs: list[WindowRef] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device, non_blocking=non_blocking)
            moved[f.name] = value
        return Batch(**moved)

    def __len__(self) -> int:
        return self.input_ids.shape[0]
