"""Posts -> windows -> batches. The only place where text, labels and cached images meet.

Each post is split into windows by :class:`pipeline.data.align.Aligner` (one window for any
post that fits ``max_length`` pieces). A dataset item is one window; images are read from the
feature cache lazily, one grid per item, so memory does not grow with the image set and several
DataLoader workers can share one cache file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from pipeline.batch import Batch, WindowRef
from pipeline.data.align import Aligner, Window
from pipeline.data.types import Post
from pipeline.errors import CacheError
from pipeline.labels import ESD_LABELS, LabelVocab, esd_tag

#: Shape of one cached visual grid after flattening: 7x7 blocks of 2048-d ResNet features.
GRID_BLOCKS = 49
GRID_DIM = 2048
_MAX_LISTED = 5


@dataclass(frozen=True)
class Item:
    window: Window
    ref: WindowRef
    words: list[str]
    labels: list[int] | None
    esd_labels: list[int] | None
    image: str | None


class MnerDataset(Dataset):
    """Windows of ``posts`` ready for :func:`collate`.

    ``features`` is a ``cache.FeatureCache`` or None (text-only models, or training with every
    image absent). Every post's image id must be in the cache (with any status): an id that the
    cache has never seen means the cache was built for other data, which is an error, not an
    absent image.
    """

    def __init__(
        self,
        posts: Sequence[Post],
        aligner: Aligner,
        vocab: LabelVocab,
        features=None,
        *,
        name: str = "data",
    ):
        self.posts = list(posts)
        self.features = features
        if features is not None:
            unknown = sorted({p.image for p in self.posts if p.image is not None and p.image not in features})
            if unknown:
                shown = ", ".join(unknown[:_MAX_LISTED]) + (" ..." if len(unknown) > _MAX_LISTED else "")
                raise CacheError(
                    f"{len(unknown)} image id(s) of {name} are not in the feature cache ({shown}); "
                    "the cache was built for other images: rerun `umt extract-images` for this dataset"
                )
        esd_index = {z: i for i, z in enumerate(ESD_LABELS)}
        self.items: list[Item] = []
        for post_index, post in enumerate(self.posts):
            label_ids = vocab.encode(post.labels) if post.labels is not None else None
            for window in aligner.windows(post.tokens):
                span = slice(window.offset, window.offset + len(window.word_index))
                labels = label_ids[span] if label_ids is not None else None
                esd = [esd_index[esd_tag(t)] for t in post.labels[span]] if post.labels is not None else None
                ref = WindowRef(post_index, window.offset, window.keep_from, window.keep_to)
                self.items.append(Item(window, ref, post.tokens[span], labels, esd, post.image))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Item, torch.Tensor | None, bool]:
        item = self.items[index]
        if self.features is None or item.image is None:
            return item, None, False
        grid, present = self.features.get(item.image)  # (49, 2048) float32
        return item, grid, present


class Collator:
    """Pads a list of dataset items into one :class:`Batch` (dynamic padding per batch)."""

    def __init__(self, pad_id: int, with_images: bool):
        self.pad_id = pad_id
        self.with_images = with_images

    def __call__(self, rows: list[tuple[Item, torch.Tensor | None, bool]]) -> Batch:
        size = len(rows)
        max_pieces = max(len(item.window.input_ids) for item, _, _ in rows)
        max_words = max(len(item.window.word_index) for item, _, _ in rows)
        input_ids = torch.full((size, max_pieces), self.pad_id, dtype=torch.long)  # (B, L)
        attention = torch.zeros((size, max_pieces), dtype=torch.long)  # (B, L)
        word_index = torch.zeros((size, max_words), dtype=torch.long)  # (B, W)
        word_mask = torch.zeros((size, max_words), dtype=torch.bool)  # (B, W)
        labelled = all(item.labels is not None for item, _, _ in rows)
        labels = torch.zeros((size, max_words), dtype=torch.long) if labelled else None  # (B, W)
        esd = torch.zeros((size, max_words), dtype=torch.long) if labelled else None  # (B, W)
        image = torch.zeros((size, GRID_BLOCKS, GRID_DIM)) if self.with_images else None  # (B, 49, 2048)
        image_mask = torch.zeros(size, dtype=torch.bool)  # (B,)
        for b, (item, grid, present) in enumerate(rows):
            n_pieces, n_words = len(item.window.input_ids), len(item.window.word_index)
            input_ids[b, :n_pieces] = torch.tensor(item.window.input_ids)
            attention[b, :n_pieces] = 1
            word_index[b, :n_words] = torch.tensor(item.window.word_index)
            word_mask[b, :n_words] = True
            if labels is not None:
                labels[b, :n_words] = torch.tensor(item.labels)
                esd[b, :n_words] = torch.tensor(item.esd_labels)
            if image is not None and present:
                image[b] = grid
                image_mask[b] = True
        return Batch(
            input_ids=input_ids,
            attention_mask=attention,
            word_index=word_index,
            word_mask=word_mask,
            labels=labels,
            esd_labels=esd,
            image=image,
            image_mask=image_mask,
            words=[item.words for item, _, _ in rows],
            refs=[item.ref for item, _, _ in rows],
        )
