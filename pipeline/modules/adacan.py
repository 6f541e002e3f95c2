"""AdaCAN (Zhang et al., AAAI 2018): adaptive co-attention, gated fusion and a filtration gate.

    V     = tanh(W_u U + b_u)                                projected regions        (B, 49, d)
    v~_t  = sum_i softmax_i(w1 . tanh(W_h h_t + W_v v_i)) v_i  word-guided visual att.  (B, L, d)
    h^_t  = sum_j softmax_j(w2 . tanh(W_q v~_t + W_x h_j)) h_j image-guided textual att. (B, L, d)
    g_t   = sigmoid(W_g [tanh(W_1 v~_t); tanh(W_2 h^_t)])     gated multimodal fusion
    m_t   = g_t * tanh(W_1 v~_t) + (1 - g_t) * tanh(W_2 h^_t)                          (B, L, d)
    s_t   = sigmoid(W_s [h_t; m_t])                          filtration gate          (B, L, d)
    u_t   = s_t * tanh(W_m m_t)
    out_t = [h_t; u_t]                                                                (B, L, 2d)

The regions are projected as Zhang et al. wrote it, a single-layer perceptron with tanh (the
learned "no image" grid passes through the same tanh; ``adacan_tanh=false`` projects linearly).
The tagger's emission layer on ``out`` is Zhang et al.'s final W_c [h_t; u_t]; its dropout is
the only one between the text states and the emissions (the module drops nothing itself, so
no feature is dropped twice). The textual attention runs over the real text positions (BiLSTM
words or BERT pieces); a post without an image attends over the learned "no image" grid, and
the filtration gate can shut it out.
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


class AdaptiveCoAttention(Fusion):
    def __init__(self, d: int, visual_dim: int, grid: int, *, tanh: bool):
        super().__init__()
        self.tanh = tanh  # Zhang et al.'s projection; False: linear (runs made before it)
        self.visual = VisualProjection(visual_dim, d, grid)  # U -> V
        self.word_to_visual = AdditiveAttention(d, d, d)  # each word over the regions
        self.visual_to_word = AdditiveAttention(d, d, d)  # each word's visual vector over the words
        self.visual_in = nn.Linear(d, d)  # W_1
        self.text_in = nn.Linear(d, d)  # W_2
        self.fusion_gate = nn.Linear(2 * d, d)  # W_g
        self.filtration_gate = nn.Linear(2 * d, d)  # W_s
        self.filtered = nn.Linear(d, d)  # W_m
        self.out_dim = 2 * d
        init_weights(self)

    @classmethod
    def from_config(cls, config: ModelConfig, d: int) -> AdaptiveCoAttention:
        return cls(d, config.visual_dim, config.grid, tanh=config.adacan_tanh)

    def forward(
        self, text: torch.Tensor, text_mask: torch.Tensor, image: torch.Tensor | None, image_mask: torch.Tensor
    ) -> torch.Tensor:
        v = self.visual(image, image_mask, batch_size=text.shape[0])  # (B, 49, d) W_u U + b_u
        v = torch.tanh(v) if self.tanh else v  # (B, 49, d) V
        visual, weights = self.word_to_visual(text, v)  # (B, L, d) v~, (B, L, 49)
        self.record(weights)
        textual, _ = self.visual_to_word(visual, text, text_mask)  # (B, L, d) h^
        hv, hh = torch.tanh(self.visual_in(visual)), torch.tanh(self.text_in(textual))  # (B, L, d) each
        g = torch.sigmoid(self.fusion_gate(torch.cat([hv, hh], dim=-1)))  # (B, L, d)
        m = g * hv + (1 - g) * hh  # (B, L, d)
        s = torch.sigmoid(self.filtration_gate(torch.cat([text, m], dim=-1)))  # (B, L, d)
        u = s * torch.tanh(self.filtered(m))  # (B, L, d)
        return torch.cat([text, u], dim=-1)  # (B, L, 2d)
