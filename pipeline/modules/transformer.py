"""The one attention layer of the model: self-attention and cross-modal attention alike.

Section 2.3.1 defines the cross-modal Transformer (CMT) layer as a standard post-LN Transformer
layer whose queries come from one sequence and keys/values from another:

    P~ = LN(X + MH-CA(X, Y))        (eq. 1)
    P  = LN(P~ + FFN(P~))           (eq. 2)

With Y = X it is the standard Transformer layer that gives R (section 2.3) and T (section 2.4),
so one class serves both. The sizes follow the BERT layer the paper builds on: an FFN four
times as wide as d with GELU, dropout on the attention weights and on each sub-layer's output
before its residual sum, LayerNorm epsilon 1e-12, weights drawn from N(0, 0.02).

Shapes: B batch, Lq query length, Lk key length, d model width, h heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FFN_MULTIPLIER = 4  # BERT-base: intermediate 3072 = 4 x 768
LAYER_NORM_EPS = 1e-12  # BERT's LayerNorm epsilon
INIT_STD = 0.02  # BERT's initializer_range, used for every layer added on top of the encoder


def init_weights(module: nn.Module) -> None:
    """BERT's initialisation for freshly added layers: N(0, 0.02) weights, zero biases.

    PyTorch's default (Kaiming-uniform) gives the new layers much larger outputs than the
    pretrained encoder's, which upsets fine-tuning at a BERT learning rate (5e-5).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=INIT_STD)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.LayerNorm):
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


class MultiHeadAttention(nn.Module):
    """MH-CA(X, Y): m heads of scaled dot-product attention, X queries, Y keys and values."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"{heads} heads do not divide the width {d}")
        self.heads = heads
        self.query = nn.Linear(d, d)  # the m matrices W_q_i (d/m x d) stacked
        self.key = nn.Linear(d, d)  # W_k_i stacked
        self.value = nn.Linear(d, d)  # W_v_i stacked
        self.out = nn.Linear(d, d)  # W'
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``key_mask`` (B, Lk) bool, True for real keys; None when every key is real.

        Returns the output (B, Lq, d) and the attention weights (B, h, Lq, Lk) before dropout."""
        B, Lq, d = queries.shape
        Lk = keys.shape[1]
        h = self.heads
        q = self.query(queries).view(B, Lq, h, d // h).transpose(1, 2)  # (B, h, Lq, d/h)
        k = self.key(keys).view(B, Lk, h, d // h).transpose(1, 2)  # (B, h, Lk, d/h)
        v = self.value(keys).view(B, Lk, h, d // h).transpose(1, 2)  # (B, h, Lk, d/h)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // h)  # (B, h, Lq, Lk)
        if key_mask is not None:
            # the dtype's lowest finite value, not -inf: a row of padding keys stays finite
            scores = scores.masked_fill(~key_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)  # (B, h, Lq, Lk)
        heads = (self.dropout(weights) @ v).transpose(1, 2).reshape(B, Lq, d)  # (B, Lq, d) the m heads side by side
        return self.out(heads), weights  # (B, Lq, d), (B, h, Lq, Lk)


class TransformerLayer(nn.Module):
    """Eq. 1-2: a post-LN Transformer layer; self-attention when called with keys = queries."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.attention = MultiHeadAttention(d, heads, dropout)
        self.attention_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.ffn = nn.Sequential(
            nn.Linear(d, FFN_MULTIPLIER * d),
            nn.GELU(),
            nn.Linear(FFN_MULTIPLIER * d, d),
        )
        self.ffn_norm = nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self.dropout = nn.Dropout(dropout)
        init_weights(self)

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, Lq, d) queries attend over (B, Lk, d) keys/values -> (B, Lq, d)."""
        return self.attend(queries, keys, key_mask)[0]

    def attend(
        self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The layer's output (B, Lq, d) and its heads' attention weights (B, h, Lq, Lk)."""
        attended, weights = self.attention(queries, keys, key_mask)  # (B, Lq, d), (B, h, Lq, Lk)
        x = self.attention_norm(queries + self.dropout(attended))  # (B, Lq, d) eq. 1
        return self.ffn_norm(x + self.dropout(self.ffn(x))), weights  # (B, Lq, d) eq. 2
