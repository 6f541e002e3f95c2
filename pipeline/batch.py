"""The batch: the one contract between the text side, the models and the trainer.

A post is cut into one or more *windows* by its recipe's text side (a long post is split, see
``umt.pipeline.text``). A batch holds windows. ``text`` holds the text side's own tensors
(sub-word ids for a Hugging Face encoder; word and character ids for a word-level encoder), read
only by the matching encoder. Everything else is word-level and the same for every model:
``word_mask``, the labels, the image grid and its mask. New encoders and fusions slot in
without touching the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch


@dataclass(frozen=True)
class Placement:
    """Where a window sits in its post, and which of its words it owns.

    ``offset``: index (in the post) of the window's first word; ``keep_from``/``keep_to``: the
    window-relative word range whose predictions this window owns (the others are context,
    owned by a neighbour window). The text sides cut posts so that the owned ranges of a post's
    windows cover it exactly once (``umt.pipeline.text.base.window_spans``).
    """

    offset: int
    keep_from: int
    keep_to: int

    @property
    def owned(self) -> range:
        """The post's word indices this window owns."""
        return range(self.offset + self.keep_from, self.offset + self.keep_to)


@dataclass(frozen=True)
class WindowRef:
    """A batch row's window: the index of its post in the dataset and where it sits there."""

    post: int
    place: Placement


def _moved(obj, device: torch.device | str, non_blocking: bool):
    """A copy of the dataclass ``obj`` with every tensor field on ``device``."""
    changes = {
        f.name: getattr(obj, f.name).to(device, non_blocking=non_blocking)
        for f in fields(obj)
        if isinstance(getattr(obj, f.name), torch.Tensor)
    }
    return replace(obj, **changes)


@dataclass
class TextInputs:
    """Base of a text side's batch tensors; subclasses are dataclasses of tensors."""

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TextInputs:
        return _moved(self, device, non_blocking)


@dataclass
class SubwordInputs(TextInputs):
    """What a Hugging Face encoder reads."""

    input_ids: torch.Tensor  # (B, L) long, sub-word ids incl. [CLS]/[SEP]
    attention_mask: torch.Tensor  # (B, L) long, 1 for real pieces
    word_index: torch.Tensor  # (B, W) long, piece position of each word's first piece (0 on padding)


@dataclass
class WordInputs(TextInputs):
    """What a word-level encoder (embeddings, character CNN / LSTM, BiLSTM) reads."""

    word_ids: torch.Tensor  # (B, W) long, vocabulary ids (0 on padding)
    char_ids: torch.Tensor  # (B, W, C) long, character ids of each word (0 on padding)
    casing: torch.Tensor  # (B, W) long, casing category of each word (0 on padding)
    mask: torch.Tensor  # (B, W) bool, True for real words


@dataclass
class Batch:
    text: TextInputs  # the text side's tensors (SubwordInputs for Hugging Face encoders, WordInputs for words)
    word_mask: torch.Tensor  # (B, W) bool, True for real words
    labels: torch.Tensor | None  # (B, W) long NER label ids (0 on padding); None when unlabelled
    esd_labels: torch.Tensor | None  # (B, W) long ESD label ids (0 on padding)
    image: torch.Tensor | None  # (B, 49, 2048) float visual grid; None for text-only data
    image_mask: torch.Tensor  # (B,) bool, True where the post has a usable image
    words: list[list[str]] = field(default_factory=list)  # raw words of each window
    refs: list[WindowRef] = field(default_factory=list)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = _moved(self, device, non_blocking)
        moved.text = self.text.to(device, non_blocking=non_blocking)
        return moved

    def __len__(self) -> int:
        return self.word_mask.shape[0]
