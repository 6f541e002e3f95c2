"""The text side of a recipe: how one family of encoders reads posts.

Every registered model names a text side. It owns everything between a post's words and the
encoder's input tensors, and nothing else:

- :meth:`TextSide.create` sets it up for a new run (load a tokenizer, build a vocabulary from
  the training posts); :meth:`TextSide.save` / :meth:`TextSide.load` keep it in the run
  directory, so a run rebuilds its model with no hub and no training data;
- :meth:`TextSide.windows` cuts a post's words into model inputs (a long post into several
  windows, each word owned by exactly one of them);
- :meth:`TextSide.collate` pads windows into the batch's ``text`` tensors;
- :meth:`TextSide.build_encoder` builds the encoder module that reads those tensors and returns
  :class:`umt.pipeline.modules.encoders.TextStates`.

The Hugging Face sub-word side is :class:`umt.pipeline.text.subword.SubwordTextSide`; a word
or character encoder is another subclass, registered with its model (docs/design.md, "Adding a model").
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from umt.pipeline.batch import Placement

if TYPE_CHECKING:
    from umt.pipeline.batch import TextInputs
    from umt.pipeline.data.types import Post
    from umt.pipeline.models.config import ModelConfig
    from umt.pipeline.modules.encoders import Encoder


@dataclass(frozen=True)
class Window(Placement):
    """One model input cut from a post: its words from ``offset`` on (``len(window)`` of them), of
    which it owns ``owned`` (:class:`umt.pipeline.batch.Placement`). Subclasses add the encoder's input."""

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def positions(self) -> int:
        """The encoder positions the window fills (pieces with special tokens, or words):
        what a batch is padded to, and what length-bucketed batches group by."""
        return len(self)


@dataclass(frozen=True)
class Span:
    """Where a window sits in its post: words ``[start, end)``, of which it owns ``[own_from, own_to)``."""

    start: int
    end: int
    own_from: int
    own_to: int


def window_spans(lengths: Sequence[int], budget: int, stride: int) -> list[Span]:
    """Cut a post whose words fill ``lengths`` positions each into windows of whole words.

    Each window holds at most ``budget`` positions (a word longer than that must have been cut
    by the caller). Consecutive windows overlap by up to ``stride`` positions of context (less
    when the next word would not fit otherwise). Each word is owned by exactly one window: the
    words of an overlap are split at its midpoint (rounded up), so each is predicted by the
    window where it has more context on its open side; the owned ranges, in order, cover the
    post exactly once.
    """
    if not lengths:
        return []
    ranges = []
    start = 0
    while True:
        end, used = start, 0
        while end < len(lengths) and used + lengths[end] <= budget:
            used += lengths[end]
            end += 1
        ranges.append((start, end))
        if end == len(lengths):
            break
        room = min(stride, budget - lengths[end])  # context to step back over, leaving room for word `end`
        start, overlap = end, 0
        while start - 1 > ranges[-1][0] and overlap + lengths[start - 1] <= room:
            start -= 1
            overlap += lengths[start]
    cuts = [0, *((nxt + end + 1) // 2 for (_, end), (nxt, _) in pairwise(ranges)), len(lengths)]
    owned = pairwise(cuts)
    return [Span(start, end, own_from, own_to) for (start, end), (own_from, own_to) in zip(ranges, owned, strict=True)]


class TextSide(ABC):
    """Interface of a text side; ``kind`` is what a run directory records to reload it."""

    kind: ClassVar[str]
    #: What one more forward call costs on a CPU, in encoder positions: evaluation batches are
    #: cut where the padding saved is worth more (:func:`umt.pipeline.data.batching.cut_by_length`).
    #: None: fixed batches (an encoder whose cost is not padded positions, as a recurrent one's).
    call_cost: ClassVar[float | None] = None

    @classmethod
    @abstractmethod
    def create(cls, model_cfg: ModelConfig, train_posts: Sequence[Post]) -> TextSide:
        """Set up for a new run (``model_cfg`` also says how to window posts: ``max_length``, ``stride``)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, model_cfg: ModelConfig) -> TextSide:
        """Reopen what :meth:`save` wrote into ``folder``."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write everything :meth:`load` needs into ``folder`` (created by the caller)."""

    @abstractmethod
    def windows(self, tokens: Sequence[str]) -> list[Window]:
        """The windows of one post; every word is owned by exactly one of them."""

    @abstractmethod
    def collate(self, windows: Sequence[Window]) -> TextInputs:
        """Pad ``windows`` into the batch's text tensors (their word axis is the batch's W)."""

    @abstractmethod
    def build_encoder(self, model_cfg: ModelConfig) -> Encoder:
        """The encoder module reading :meth:`collate`'s tensors (pretrained weights when
        ``model_cfg.pretrained_encoder``; a reloaded run's checkpoint supplies them otherwise)."""

    def describe(self) -> dict[str, Any]:
        """What the run's config.json records of this text side (at least ``kind``)."""
        return {"kind": self.kind}
