"""An independent softmax per word (the paper's BERT baseline): cross-entropy, argmax decode."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from umt.pipeline.heads.crf import Entity


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

    @torch.no_grad()
    def entity_probabilities(self, emissions: torch.Tensor, entities: Sequence[Entity]) -> list[float]:
        """P(the tags hold exactly ``entity`` | x) with independent words (see ``CRFHead``):
        (p_s(B) + p_s(I) (1 - p_s-1(B) - p_s-1(I))) * prod_{t=s+1}^{e-1} p_t(I) * (1 - p_e(I))."""
        probs = emissions.float().softmax(dim=-1)  # (n, K)
        n = probs.shape[0]
        out = []
        for entity in entities:
            s, b, i = entity.start, entity.begin, entity.inside
            before = 1.0 - probs[s - 1, b] - probs[s - 1, i] if s > 0 else 1.0
            p = probs[s, b] + probs[s, i] * before
            p = p * torch.prod(probs[s + 1 : entity.end, i])
            if entity.end < n:
                p = p * (1.0 - probs[entity.end, i])
            out.append(float(p))
        return out
