"""Emission scores: dropout, then one linear map from word states to per-label scores (eq. 6).

The map runs in fp32 also under autocast: it costs nothing beside the encoder, and the CRF it
feeds sums scores over whole sentences, where bf16's 8-bit mantissa would round them."""

from __future__ import annotations

import torch
from torch import nn

from umt.pipeline.modules.transformer import init_weights


class EmissionLayer(nn.Module):
    """(B, W, width) word states -> (B, W, num_labels) scores E = w_label . h."""

    def __init__(self, width: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(width, num_labels)
        init_weights(self)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        with torch.autocast(words.device.type, enabled=False):
            return self.linear(self.dropout(words.float()))  # (B, W, num_labels) fp32
