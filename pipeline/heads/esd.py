"""The auxiliary entity span detection branch (section 2.4): text only, labels B / I / O."""

from __future__ import annotations

import torch
from torch import nn

from umt.pipeline.heads.crf import CRFHead
from umt.pipeline.heads.emissions import EmissionLayer
from umt.pipeline.labels import ESD_LABELS
from umt.pipeline.modules.encoders import TextStates
from umt.pipeline.modules.transformer import TransformerLayer


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

    def forward(self, text: TextStates) -> torch.Tensor:
        """The encoder's C over its positions (pieces or words) -> (B, W, |Z|) span emissions."""
        t = self.layer(text.states, text.states, text.mask)  # (B, L, d) T
        return self.emission(text.words(t))  # (B, W, |Z|)

    def loss(self, emissions: torch.Tensor, labels: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        return self.crf.loss(emissions, labels, word_mask)
