"""Sentence encoders: a text side's tensors -> contextual states C (section 2.2), and the word gather.

Every encoder returns :class:`TextStates`: states over its own positions (word pieces for a
Hugging Face encoder, words for a word-level one), their mask, and where each word sits among
them. The tagger's added layers (MMI, the span detector's T) run over those positions, as the
paper runs them over BERT's pieces; heads read word vectors from :meth:`TextStates.words`. A
word-level encoder has ``word_index = 0..W-1``, so both kinds plug into the tagger the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from umt.pipeline.batch import SubwordInputs, TextInputs
from umt.pipeline.packing import PackedRows


def gather_words(states: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
    """(B, L, d) position states -> (B, W, d) states at each word's position (its first piece).

    The CRF labels words, not pieces (only a word's first piece carries its label), so every
    head reads word vectors. Padding words gather position 0 ([CLS]) and are masked later.
    """
    index = word_index.unsqueeze(-1).expand(-1, -1, states.shape[-1])  # (B, W, d)
    return states.gather(1, index)  # (B, W, d)


@dataclass
class TextStates:
    """An encoder's output C over its positions, and the map from words to positions."""

    states: torch.Tensor  # (B, L, d) C: one state per position (piece or word)
    mask: torch.Tensor  # (B, L) bool, True on real positions
    word_index: torch.Tensor  # (B, W) long, the position of each word (its first piece)

    def words(self, states: torch.Tensor | None = None) -> torch.Tensor:
        """(B, W, d') word vectors of ``states`` (default: C), any (B, L, d') over these positions."""
        return gather_words(self.states if states is None else states, self.word_index)


class Encoder(nn.Module):
    """Interface: ``forward(inputs) -> TextStates`` and ``hidden_size`` (d). ``pretrained``
    encoders train at ``--lr``, every other parameter of a model at ``head_lr``. ``packs``: in
    eval mode on a CPU, the encoder runs a batch's windows packed into rows
    (:mod:`umt.pipeline.packing`), so what a batch costs is its packed rows, not its windows."""

    hidden_size: int
    pretrained: bool = False
    packs: bool = False

    def forward(self, inputs: TextInputs) -> TextStates:
        raise NotImplementedError


#: Hugging Face model types whose base model is ``encoder(embeddings(input_ids), mask)`` with
#: absolute positions added in ``embeddings``: their layers see no positions, so a packed row of
#: several windows gives each window the states it has alone (tested for each).
PACKABLE_TYPES = frozenset({"bert", "roberta", "xlm-roberta"})


def packable(model: PreTrainedModel) -> bool:
    """Whether ``model`` can run packed rows: a packable type with no decoder, absolute
    positions only, on SDPA attention (which reads the boolean block mask as it is)."""
    config = model.config
    return (
        config.model_type in PACKABLE_TYPES
        and not config.is_decoder
        and getattr(config, "position_embedding_type", "absolute") == "absolute"  # transformers 4 has others
        and config._attn_implementation == "sdpa"
        and isinstance(getattr(model, "embeddings", None), nn.Module)
        and isinstance(getattr(model, "encoder", None), nn.Module)
    )


class PretrainedEncoder(Encoder):
    """A Hugging Face encoder (fine-tuned) returning its last hidden states C = (c_0 .. c_{n+1}).

    In eval mode on a CPU a packable model (:func:`packable`) runs a batch packed: embeddings
    over the padded batch (each window's own positions and token types), then the layers over
    packed rows with attention kept within each window. Training runs the padded batch as it is,
    and so does a GPU, where padding costs little and packing would wait on the device for the
    lengths."""

    pretrained = True

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.hidden_size: int = model.config.hidden_size  # d
        self.packs = packable(model)

    @property
    def hf_config(self) -> PretrainedConfig:
        """The encoder's own config: saved in the run directory to rebuild the encoder offline."""
        return self.model.config

    def forward(self, inputs: SubwordInputs) -> TextStates:
        """(B, L) piece ids and mask -> (B, L, d) contextual piece states C (zeros on padding when packed)."""
        if self.packs and not self.training and inputs.input_ids.device.type == "cpu":
            states = self._packed(inputs)
        else:
            states = self.model(input_ids=inputs.input_ids, attention_mask=inputs.attention_mask).last_hidden_state
        return TextStates(states, inputs.attention_mask.bool(), inputs.word_index)  # (B, L, d)

    def _packed(self, inputs: SubwordInputs) -> torch.Tensor:
        """(B, L, d) states of the batch's windows run packed into rows of width L."""
        size, width = inputs.input_ids.shape
        rows = PackedRows.of(inputs.attention_mask.sum(1).tolist(), width, inputs.input_ids.device)
        embedded = self.model.embeddings(input_ids=inputs.input_ids)  # (B, L, d)
        packed = self.model.encoder(rows.pack(embedded), attention_mask=rows.attention()).last_hidden_state  # (R, L, d)
        return rows.unpack(packed, size)  # (B, L, d)
