"""The one tagger every zoo entry is composed from: encoder x fusion x heads.

    C = encoder(text inputs)                           (B, L, d)       over pieces (or words)
    H = fusion(C, image) if multimodal else C          (B, L, width)   e.g. MMI: [A; B], width 2d
    E = w_MNER . words(H)                              (B, W, |Y|)     eq. 6
    E += (w_ESD . gather_words(T)) W^c  if ESD + W^c   (B, W, |Y|)     eq. 7, T = Transformer(C), in fp32
    loss = NLL_MNER(E) + lambda * NLL_ESD              section 2.5
    decode = Viterbi(E) (or argmax without a CRF)

The contract the trainer relies on, and nothing more: ``forward(batch)`` returns the scalar
training loss (a CRF's sentence NLL summed and divided by the number of windows; a softmax's
cross-entropy averaged over the real words), ``decode(batch)`` the MNER label ids of the real
words of each window, ``multimodal`` says whether the model reads images, ``packs`` whether it
runs evaluation batches packed into rows (:mod:`umt.pipeline.packing`). ``config`` is the
effective configuration (the registered name's switches applied): store it in a run directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from umt.pipeline.batch import Batch
from umt.pipeline.heads.conversion import LabelConversion, conversion_matrix
from umt.pipeline.heads.crf import CRFHead
from umt.pipeline.heads.emissions import EmissionLayer
from umt.pipeline.heads.esd import SpanDetector
from umt.pipeline.heads.softmax import SoftmaxHead
from umt.pipeline.labels import LabelVocab
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.modules.encoders import Encoder
from umt.pipeline.modules.fusion import Fusion


class Tagger(nn.Module):
    """A sequence tagger over words; ``fusion`` None makes it text-only (it never reads images)."""

    def __init__(self, config: ModelConfig, vocab: LabelVocab, encoder: Encoder, fusion: Fusion | None):
        super().__init__()
        self.config = config
        self.vocab = vocab
        self.multimodal = fusion is not None
        self.encoder = encoder
        self.fusion = fusion
        width = fusion.out_dim if fusion is not None else encoder.hidden_size
        self.emission = EmissionLayer(width, len(vocab), config.dropout)  # w_MNER
        self.span_detector = SpanDetector(encoder.hidden_size, config.heads, config.dropout) if config.esd else None
        self.conversion = (
            LabelConversion(conversion_matrix(vocab), trainable=config.conversion_trainable, mix=config.emission_mix)
            if config.esd and config.conversion
            else None
        )
        self.head = CRFHead(len(vocab)) if config.crf else SoftmaxHead()
        self.word_attention: torch.Tensor | None = None  # set under explaining()

    def emissions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """MNER emissions (B, W, |Y|) and, with the ESD branch, its span emissions (B, W, |Z|)."""
        text = self.encoder(batch.text)  # C: (B, L, d) states over the encoder's positions
        states = text.states
        if self.fusion is not None:  # batch.image None: every post is image-less
            states = self.fusion(text.states, text.mask, batch.image, batch.image_mask)  # (B, L, width) H
            if self.fusion.recording:
                self.word_attention = text.words(self.fusion.recorded)  # (B, W, grid)
        emissions = self.emission(text.words(states))  # (B, W, |Y|) eq. 6
        span_emissions = None
        if self.span_detector is not None:
            span_emissions = self.span_detector(text)  # (B, W, |Z|)
            if self.conversion is not None:
                emissions = self.conversion(emissions, span_emissions)  # (B, W, |Y|) eq. 7
        return emissions, span_emissions

    @property
    def packs(self) -> bool:
        """Whether, in eval mode, a batch's windows run packed into rows (its encoder's ``packs``)."""
        return self.encoder.packs

    @contextmanager
    def explaining(self) -> Iterator[None]:
        """Within, each :meth:`emissions` call leaves in ``word_attention`` (B, W, grid) how much
        each word attended to each cell of its post's visual grid (the fusion's own attention:
        MMI's word-to-visual layer averaged over heads, GVATT's sentence query, AdaCAN's words)."""
        if self.fusion is None:
            raise ValueError("a text-only model attends to no image")
        self.fusion.recording = True
        try:
            yield
        finally:
            self.fusion.recording = False
            self.fusion.recorded = None

    def forward(self, batch: Batch) -> torch.Tensor:
        """The training loss: NLL(MNER) + lambda * NLL(ESD), each averaged over the windows."""
        if batch.labels is None:
            raise ValueError("the training loss needs batch.labels")
        emissions, span_emissions = self.emissions(batch)
        loss = self.head.loss(emissions, batch.labels, batch.word_mask)
        if span_emissions is not None:
            if batch.esd_labels is None:
                raise ValueError("a model with the ESD branch needs batch.esd_labels")
            span_loss = self.span_detector.loss(span_emissions, batch.esd_labels, batch.word_mask)
            loss = loss + self.config.esd_weight * span_loss
        return loss

    @torch.no_grad()
    def decode(self, batch: Batch) -> list[list[int]]:
        """MNER label ids of each window's real words (call in eval mode: dropout is the caller's)."""
        emissions, _ = self.emissions(batch)
        return self.head.decode(emissions, batch.word_mask)
