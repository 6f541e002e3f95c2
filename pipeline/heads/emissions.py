"""Emission scores: dropout, then one linear map from word states to per-label scores (eq. 6)."""

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
        return self.linear(self.dropout(words))  # (B, W, num_labels)
