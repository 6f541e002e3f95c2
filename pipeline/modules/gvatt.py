"""GVATT (Lu et al., ACL 2018): visual attention guided by the sentence, then a visual modulation gate.

    V   = W_u U                                     projected regions             (B, 49, d)
    s   = mean of the text states over real positions  the sentence query         (B, d)
    v_c = sum_i softmax_i(w . tanh(W_s s + W_v v_i)) v_i   visual context         (B, d)
    beta_w = sigmoid(W_w h_t + U_w v_c)             how much of the word stays    (B, L, d)
    beta_v = sigmoid(W_b h_t + U_b v_c)             how much visual context enters
    m_t    = tanh(W_m h_t + U_m v_c)                the word modulated by the image
    out_t  = beta_w * h_t + beta_v * m_t                                          (B, L, d)

Lu et al. query the regions with a sentence vector from their BiLSTM; this module takes the
mean of whatever text states it gets (BiLSTM words or BERT pieces), so the LSTM and BERT
variants share it. A post without an image attends over the learned "no image" grid. The
module drops nothing itself: the tagger's dropout before the emission layer is the one dropout
between the text states and the emissions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from umt.pipeline.modules.attention import AdditiveAttention
from umt.pipeline.modules.fusion import Fusion
from umt.pipeline.modules.transformer import init_weights
from umt.pipeline.modules.visual import VisualProjection

if TYPE_CHECKING:
    from umt.pipeline.models.config import ModelConfig


class GatedVisualAttention(Fusion):
    def __init__(self, d: int, visual_dim: int, grid: int):
        super().__init__()
        self.visual = VisualProjection(visual_dim, d, grid)  # U -> V
        self.attention = AdditiveAttention(d, d, d)  # sentence over regions
        self.gates = nn.Linear(2 * d, 3 * d)  # [h; v_c] -> beta_w, beta_v, m (the W and U maps side by side)
        self.out_dim = d
        init_weights(self)

    @classmethod
    def from_config(cls, config: ModelConfig, d: int) -> GatedVisualAttention:
        return cls(d, config.visual_dim, config.grid)

    def forward(
        self, text: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor | None, image_mask: torch.Tensor
    ) -> torch.Tensor:
        v = self.visual(image, image_mask, batch_size=text.shape[0])  # (B, 49, d) V
        real = text_mask[..., None].to(text.dtype)  # (B, L, 1)
        sentence = (text * real).sum(1) / real.sum(1).clamp(min=1.0)  # (B, d)
        context, weights = self.attention(sentence[:, None, :], v)  # (B, 1, d) v_c, (B, 1, 49)
        self.record(weights.expand(-1, text.shape[1], -1))  # (B, L, 49) one map for the whole sentence
        context = context.expand_as(text)  # (B, L, d)
        keep, enter, modulated = self.gates(torch.cat([text, context], dim=-1)).chunk(3, dim=-1)  # 3 x (B, L, d)
        return torch.sigmoid(keep) * text + torch.sigmoid(enter) * torch.tanh(modulated)  # (B, L, d)
