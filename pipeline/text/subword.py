"""The Hugging Face text side: words -> sub-word windows -> :class:`SubwordInputs` -> any HF encoder.

Alignment (first piece carries the word, windows for long posts) is :mod:`umt.pipeline.text.align`.
In a run directory the side keeps the encoder's config and tokenizer (its weights are in the
checkpoint), so a run reloads with no hub.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from umt.pipeline.batch import SubwordInputs
from umt.pipeline.data.types import Post
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.modules.encoders import PretrainedEncoder
from umt.pipeline.text.align import Aligner, PieceWindow
from umt.pipeline.text.base import TextSide
from umt.pipeline.text.hf import load_encoder_model, load_tokenizer, save_model_files


class SubwordTextSide(TextSide):
    """A Hugging Face fast tokenizer and encoder; ``source`` is the encoder's name or folder."""

    kind = "hf-subword"
    # A transformer reads all its weights once per call and each position costs its weights' FLOPs,
    # so a call costs a fixed number of positions, the machine's FLOPs per byte read: measured on
    # this project's 2-core CPU (all-MiniLM-L6-v2, batches of 1 to 64 windows), a call is
    # 5 ms + 0.093 ms per position, about 54 positions.
    call_cost = 54.0

    def __init__(self, tokenizer, source: str, max_length: int, stride: int):
        self.tokenizer = tokenizer
        self.source = source
        self.aligner = Aligner(tokenizer, max_length=max_length, stride=stride)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def create(cls, model_cfg: ModelConfig, train_posts: Sequence[Post]) -> SubwordTextSide:
        return cls(load_tokenizer(model_cfg.encoder), model_cfg.encoder, model_cfg.max_length, model_cfg.stride)

    @classmethod
    def load(cls, folder: Path, model_cfg: ModelConfig) -> SubwordTextSide:
        return cls(load_tokenizer(str(folder)), str(folder), model_cfg.max_length, model_cfg.stride)

    def save(self, folder: Path) -> None:
        save_model_files(self.source, self.tokenizer, folder)

    def windows(self, tokens: Sequence[str]) -> list[PieceWindow]:
        return self.aligner.windows(tokens)

    def collate(self, windows: Sequence[PieceWindow]) -> SubwordInputs:
        size = len(windows)
        max_pieces = max(len(w.input_ids) for w in windows)
        max_words = max(len(w.word_index) for w in windows)
        input_ids = torch.full((size, max_pieces), self.pad_id, dtype=torch.long)  # (B, L)
        attention = torch.zeros((size, max_pieces), dtype=torch.long)  # (B, L)
        word_index = torch.zeros((size, max_words), dtype=torch.long)  # (B, W)
        for b, window in enumerate(windows):
            input_ids[b, : len(window.input_ids)] = torch.tensor(window.input_ids)
            attention[b, : len(window.input_ids)] = 1
            word_index[b, : len(window.word_index)] = torch.tensor(window.word_index)
        return SubwordInputs(input_ids, attention, word_index)

    def build_encoder(self, model_cfg: ModelConfig) -> PretrainedEncoder:
        return PretrainedEncoder(load_encoder_model(self.source, pretrained=model_cfg.pretrained_encoder))

    def describe(self) -> dict:
        return {"kind": self.kind, "encoder": self.source}
