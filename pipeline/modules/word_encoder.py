"""The BiLSTM baselines' sentence encoder: word embeddings [+ characters] [+ casing] -> BiLSTM.

    x_t = [e(w_t); char(w_t); case(w_t)]        per word                 (B, W, d_in)
    C   = BiLSTM(dropout(x))                    per word, both directions (B, W, 2h)

Ma and Hovy drop out the embeddings and the BiLSTM's output once each. The output's dropout is
the tagger's, applied once before its classifier (the emission layer, or a fusion's output on
its way there), so the encoder returns C undropped: a second dropout here would keep a feature
with probability (1 - p)^2 and scale it by 1 / (1 - p)^2 (0.25 and 4 at the recipes' 0.5).

char(w) is Ma and Hovy's (2016) character CNN (embeddings, one convolution, max over the
characters) or Lample et al.'s (2016) character BiLSTM (the last states of both directions).
The states are over words, so ``word_index`` is 0..W-1 and every head of the zoo reads them as
it reads BERT's first pieces; a fusion or the span detector runs over them the same way.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from umt.pipeline.batch import WordInputs
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.modules.encoders import Encoder, TextStates


def _uniform_embedding(count: int, dim: int) -> nn.Embedding:
    """Rows uniform in +-sqrt(3 / dim) (Ma and Hovy), the padding row 0."""
    embedding = nn.Embedding(count, dim, padding_idx=0)
    bound = math.sqrt(3.0 / dim)
    with torch.no_grad():
        embedding.weight.uniform_(-bound, bound)
        embedding.weight[0].zero_()
    return embedding


class CharCNN(nn.Module):
    """(N, C) character ids of N words -> (N, filters): convolution, max over real characters."""

    WINDOW = 3  # Ma and Hovy: window 3

    def __init__(self, chars: int, dim: int, filters: int):
        super().__init__()
        self.embedding = _uniform_embedding(chars, dim)
        self.conv = nn.Conv1d(dim, filters, kernel_size=self.WINDOW, padding=self.WINDOW // 2)
        self.out_dim = filters

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(char_ids).transpose(1, 2)  # (N, dim, C)
        features = self.conv(x)  # (N, filters, C)
        real = (char_ids != 0)[:, None, :]  # (N, 1, C)
        return features.masked_fill(~real, torch.finfo(features.dtype).min).amax(dim=-1)  # (N, filters)


class CharLSTM(nn.Module):
    """(N, C) character ids of N words -> (N, 2 * hidden): the last state of each direction."""

    def __init__(self, chars: int, dim: int, hidden: int):
        super().__init__()
        self.embedding = _uniform_embedding(chars, dim)
        self.lstm = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * hidden

    def forward(self, char_ids: torch.Tensor) -> torch.Tensor:
        lengths = (char_ids != 0).sum(-1).clamp(min=1).cpu()  # (N,)
        packed = pack_padded_sequence(self.embedding(char_ids), lengths, batch_first=True, enforce_sorted=False)
        _, (last, _) = self.lstm(packed)  # (2, N, hidden): forward's last step, backward's first
        return torch.cat([last[0], last[1]], dim=-1)  # (N, 2 * hidden)


class WordEncoder(Encoder):
    """Word embeddings (+ characters, + casing) and a word BiLSTM; ``hidden_size`` d = 2 * lstm_hidden."""

    def __init__(self, words: int, word_dim: int, chars: int, casings: int, config: ModelConfig):
        super().__init__()
        self.embedding = _uniform_embedding(words, word_dim)
        self.chars: CharCNN | CharLSTM | None = None
        if config.char_encoder == "cnn":
            self.chars = CharCNN(chars, config.char_dim, config.char_hidden)
        elif config.char_encoder == "lstm":
            self.chars = CharLSTM(chars, config.char_dim, config.char_hidden)
        self.casing = _uniform_embedding(casings, config.case_dim) if config.case_dim else None
        width = word_dim + (self.chars.out_dim if self.chars else 0) + config.case_dim
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(width, config.lstm_hidden, batch_first=True, bidirectional=True)
        self.hidden_size: int = 2 * config.lstm_hidden

    def forward(self, inputs: WordInputs) -> TextStates:
        mask = inputs.mask  # (B, W)
        parts = [self.embedding(inputs.word_ids)]  # (B, W, word_dim)
        if self.chars is not None:
            chars = inputs.char_ids[mask]  # (N, C) the real words only
            per_word = self.chars(chars)  # (N, char_out)
            grid = per_word.new_zeros((*mask.shape, per_word.shape[-1]))  # (B, W, char_out)
            grid[mask] = per_word
            parts.append(grid)
        if self.casing is not None:
            parts.append(self.casing(inputs.casing))  # (B, W, case_dim)
        x = self.dropout(torch.cat(parts, dim=-1))  # (B, W, d_in)
        lengths = mask.sum(-1).clamp(min=1).cpu()  # (B,)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = pad_packed_sequence(states, batch_first=True, total_length=mask.shape[1])  # (B, W, 2h)
        index = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)  # (B, W) word i at position i
        return TextStates(states, mask, index)  # undropped: see the module docstring
