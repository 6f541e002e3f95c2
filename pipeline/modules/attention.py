"""Additive (Bahdanau) attention, the scoring both baseline fusions use (GVATT, AdaCAN).

score(q_i, k_j) = w . tanh(W_q q_i + W_k k_j)       (B, Lq, Lk)
alpha_i = softmax_j(score(q_i, k_j))                 over the real keys
context_i = sum_j alpha_ij k_j                       (B, Lq, d_k)
"""

from __future__ import annotations

import torch
from torch import nn


class AdditiveAttention(nn.Module):
    def __init__(self, query_dim: int, key_dim: int, hidden: int):
        super().__init__()
        self.query = nn.Linear(query_dim, hidden)  # W_q (its bias is the score's bias)
        self.key = nn.Linear(key_dim, hidden, bias=False)  # W_k
        self.score = nn.Linear(hidden, 1, bias=False)  # w

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, Lq, d_q) queries, (B, Lk, d_k) keys, (B, Lk) bool mask or None -> context, weights."""
        hidden = torch.tanh(self.query(queries)[:, :, None, :] + self.key(keys)[:, None, :, :])  # (B, Lq, Lk, a)
        scores = self.score(hidden).squeeze(-1)  # (B, Lq, Lk)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # (B, Lq, Lk)
        return weights @ keys, weights  # (B, Lq, d_k), (B, Lq, Lk)
