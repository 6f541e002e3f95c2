"""A linear-chain CRF over the words of each window (eq. 4-5), on top of pytorch-crf.

Both heads (CRF and softmax) share one interface, so a tagger takes either:
``loss(emissions, tags, mask)`` -> scalar and ``decode(emissions, mask)`` -> tag ids per window.
``mask`` (B, W) bool marks real words; words are packed to the left (a prefix mask).
"""

from __future__ import annotations

import torch
from torch import nn
from torchcrf import CRF


class CRFHead(nn.Module):
    """Transition scores T (plus start/end scores) and the sentence-level NLL / Viterbi decode."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.crf = CRF(num_tags, batch_first=True)

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """-log P(y | x) summed over windows, divided by the number of windows (section 2.5).

        (B, W, K) emissions, (B, W) tags, (B, W) bool mask -> scalar. A window with no words
        (e.g. a post made of characters the tokenizer drops) contributes 0. The forward
        algorithm runs in float32, also under mixed precision.
        """
        has_words = mask[:, 0]  # (B,) pytorch-crf needs the first step of every row on
        if not has_words.any():
            return emissions.sum() * 0.0
        log_likelihood = self.crf(
            emissions[has_words].float(), tags[has_words], mask[has_words], reduction="sum"
        )
        return -log_likelihood / emissions.shape[0]

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the best tag sequence of each window, as long as its number of real words."""
        has_words = mask[:, 0]  # (B,)
        if not has_words.any():
            return [[] for _ in range(emissions.shape[0])]
        paths = iter(self.crf.decode(emissions[has_words].float(), mask[has_words]))
        return [next(paths) if present else [] for present in has_words.tolist()]
