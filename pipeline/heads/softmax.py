"""An independent softmax per word (the paper's BERT baseline): cross-entropy, argmax decode."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftmaxHead(nn.Module):
    """Same interface as :class:`pipeline.heads.crf.CRFHead`, with no transition scores.

    The loss is the mean cross-entropy over the real words of the batch (the usual token
    classification loss), not a per-window sum as for the CRF.
    """

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not mask.any():
            return emissions.sum() * 0.0
        return F.cross_entropy(emissions[mask].float(), tags[mask])  # (N, K) scores of the N real words

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        best = emissions.argmax(dim=-1)  # (B, W)
        return [row[row_mask].tolist() for row, row_mask in zip(best, mask, strict=True)]
