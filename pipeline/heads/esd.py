"""The auxiliary entity span detection branch (section 2.4): text only, labels B / I / O."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.heads.crf import CRFHead
from pipeline.heads.emissions import EmissionLayer
from pipeline.labels import ESD_LABELS
from pipeline.modules.encoders import gather_words
from pipeline.modules.transformer import TransformerLayer


class SpanDetector(nn.Module):
    """T = Transformer(C) over the word pieces; emissions w_ESD . t over words; its own CRF.

    It reads the encoder states C, never the image, so its span predictions carry no visual
    bias; the tagger adds its emissions to the MNER ones through W^c.
    """

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.layer = TransformerLayer(d, heads, dropout)  # C -> T
        self.emission = EmissionLayer(d, len(ESD_LABELS), dropout)  # w_ESD
        self.crf = CRFHead(len(ESD_LABELS))

    def forward(
        self, pieces: torch.Tensor, piece_mask: torch.Tensor, word_index: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, d) C, (B, L) bool, (B, W) first-piece positions -> (B, W, |Z|) span emissions."""
        t = self.layer(pieces, pieces, piece_mask)  # (B, L, d) T
        return self.emission(gather_words(t, word_index))  # (B, W, |Z|)

    def loss(self, emissions: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        return self.crf.loss(emissions, labels, word_mask)
