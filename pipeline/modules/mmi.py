"""The Multimodal Transformer's text-image side (section 2.3, Fig. 2): R, V, then MMI.

    R = Transformer(C)                   textual hidden states              (B, L, d)
    V = W_u U                            projected visual blocks            (B, 49, d)
    P = CMT(V, R)                        blocks attend over words           (B, 49, d)
    A = CMT(R, P)                        image-aware word representations   (B, L, d)
    Q = CMT(R, V)                        word-aware visual representations  (B, L, d)
    g = sigmoid(W_a A + W_q Q); B = g*Q  visual gate (eq. 3)                (B, L, d)
    H = [A; B]                                                              (B, L, 2d)

The ablations of Table 3 are switches of this one module: ``image_aware=False`` replaces A by R
(no P, no coupled layer); ``visual_gate=False`` takes B = Q (no gate weights).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from umt.pipeline.modules.fusion import Fusion
from umt.pipeline.modules.transformer import TransformerLayer, init_weights
from umt.pipeline.modules.visual import VisualProjection

if TYPE_CHECKING:
    from umt.pipeline.models.config import ModelConfig


class MultimodalInteraction(Fusion):
    """Text states C (over word pieces) and a visual grid U -> H = [A; B] (B, L, 2d)."""

    def __init__(
        self,
        d: int,
        heads: int,
        dropout: float,
        visual_dim: int,
        grid: int,
        image_aware: bool = True,
        visual_gate: bool = True,
    ):
        super().__init__()
        self.text_layer = TransformerLayer(d, heads, dropout)  # C -> R
        self.visual = VisualProjection(visual_dim, d, grid)  # U -> V
        self.word_to_visual = TransformerLayer(d, heads, dropout)  # Q = CMT(R, V)
        self.visual_to_word = TransformerLayer(d, heads, dropout) if image_aware else None  # P = CMT(V, R)
        self.coupled = TransformerLayer(d, heads, dropout) if image_aware else None  # A = CMT(R, P)
        # [W_a; W_q] as one (2d -> d) map of [A; Q]: W_a A + W_q Q (+ a bias)
        self.gate = nn.Linear(2 * d, d) if visual_gate else None
        self.out_dim = 2 * d
        init_weights(self)

    @classmethod
    def from_config(cls, config: ModelConfig, d: int) -> MultimodalInteraction:
        config.check_hidden_size(d)  # the added layers split d into `heads` parts
        return cls(
            d,
            config.heads,
            config.dropout,
            visual_dim=config.visual_dim,
            grid=config.grid,
            image_aware=config.image_aware,
            visual_gate=config.visual_gate,
        )

    def forward(
        self,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        image: torch.Tensor | None,
        image_mask: torch.Tensor,
    ) -> torch.Tensor:
        r = self.text_layer(text, text, text_mask)  # (B, L, d) R
        v = self.visual(image, image_mask, batch_size=text.shape[0])  # (B, 49, d) V, never empty
        q, weights = self.word_to_visual.attend(r, v)  # (B, L, d) Q: each word attends over the blocks
        self.record(weights.mean(dim=1))  # (B, L, 49) averaged over the heads
        if self.coupled is not None:
            p = self.visual_to_word(v, r, text_mask)  # (B, 49, d) P: each block attends over the words
            a = self.coupled(r, p)  # (B, L, d) A: each word attends over the word-aware blocks
        else:
            a = r  # (B, L, d) ablation: no image-aware word representations
        if self.gate is not None:
            g = torch.sigmoid(self.gate(torch.cat([a, q], dim=-1)))  # (B, L, d) eq. 3
            b = g * q  # (B, L, d)
        else:
            b = q  # (B, L, d) ablation: no visual gate
        return torch.cat([a, b], dim=-1)  # (B, L, 2d) H
