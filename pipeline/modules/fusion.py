"""The fusion interface: how a text-image fusion plugs into a tagger.

A fusion turns the text states of a window (word pieces from BERT, or words from a BiLSTM) and
the post's visual grid into fused per-position states. MMI (section 2.3) is one; the GVATT and
AdaCAN fusions of the paper's baselines implement the same interface, so a tagger, the
registry and the trainer take any of them unchanged.

Adding a fusion is its module (a subclass with :meth:`Fusion.from_config`) plus one entry in
``umt.pipeline.models.config.FUSIONS``, the table ``--set fusion=NAME`` is checked against
and the zoo builds from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from umt.pipeline.models.config import ModelConfig


class Fusion(nn.Module):
    """Interface: ``forward(text, text_mask, image, image_mask) -> fused`` and ``out_dim``.

    text: (B, L, d) text states; text_mask: (B, L) bool, True on real positions;
    image: (B, grid, visual_dim) raw visual features, or None when the batch has no images;
    image_mask: (B,) bool, True where the post has a usable image (others must still work).
    Returns (B, L, out_dim) states, one per text position.
    """

    out_dim: int
    #: While True, ``forward`` stores in ``recorded`` how much each text position attended to each
    #: cell of the visual grid, (B, L, grid) rows summing to 1: what ``umt predict --explain`` draws.
    recording: bool = False
    recorded: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: ModelConfig, d: int) -> Fusion:
        """The fusion ``config`` describes, over text states of width ``d``."""
        raise NotImplementedError

    def record(self, weights: torch.Tensor) -> None:
        """Keep ``weights`` (B, L, grid) when recording (detached: an explanation, not a graph)."""
        if self.recording:
            self.recorded = weights.detach()

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        image: torch.Tensor | None,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError
