"""The zoo: what each registered name builds (paper section 3.2 and the ablations of Table 3).

Two builders, text-only and multimodal; each name is one of them plus the switches it fixes.
Switches a name does not fix stay free (``--model umt --set visual_gate=false`` is the same
model as ``umt-no-visual-gate``). Text-only models never read the fusion switches. Every entry
reads text through the Hugging Face sub-word side.

The builders import the model code when called, so listing or checking names stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.registry import register

if TYPE_CHECKING:
    from umt.pipeline.labels import LabelVocab
    from umt.pipeline.models.tagger import Tagger
    from umt.pipeline.modules.encoders import Encoder

SUBWORD = "umt.pipeline.text.subword:SubwordTextSide"


def text_tagger(config: ModelConfig, vocab: LabelVocab, encoder: Encoder) -> Tagger:
    """Encoder + emission layer + CRF or softmax."""
    from umt.pipeline.models.tagger import Tagger

    return Tagger(config, vocab, encoder, fusion=None)


def multimodal_tagger(config: ModelConfig, vocab: LabelVocab, encoder: Encoder) -> Tagger:
    """Encoder + MMI fusion (section 2.3) + CRF, with the ESD branch and W^c when switched on."""
    from umt.pipeline.models.tagger import Tagger
    from umt.pipeline.modules.mmi import MultimodalInteraction

    config.check_hidden_size(encoder.hidden_size)  # the added layers split d into `heads` parts
    fusion = MultimodalInteraction(
        encoder.hidden_size,
        config.heads,
        config.dropout,
        visual_dim=config.visual_dim,
        grid=config.grid,
        image_aware=config.image_aware,
        visual_gate=config.visual_gate,
    )
    return Tagger(config, vocab, encoder, fusion)


register(
    "bert-softmax", multimodal=False, text=SUBWORD, fixes={"esd": False, "crf": False},
    help="BERT: encoder + per-word softmax (text only)",
)(text_tagger)
register(
    "bert-crf", multimodal=False, text=SUBWORD, fixes={"esd": False, "crf": True},
    help="BERT-CRF: encoder + CRF (text only)",
)(text_tagger)
register(
    "mt", multimodal=True, text=SUBWORD, fixes={"esd": False},
    help="MT-BERT-CRF (section 2.3): encoder + multimodal interaction (MMI) + CRF",
)(multimodal_tagger)
register(
    "umt", multimodal=True, text=SUBWORD, fixes={"esd": True},
    help="UMT-BERT-CRF (section 2.4): MT + text-only span detection guiding it through W^c",
)(multimodal_tagger)
register(
    "umt-no-esd", multimodal=True, text=SUBWORD, fixes={"esd": False},
    help="UMT without the ESD module (Table 3): the same model as mt",
)(multimodal_tagger)
register(
    "umt-no-conversion", multimodal=True, text=SUBWORD, fixes={"esd": True, "conversion": False},
    help="UMT with ESD as an auxiliary loss only: its span scores do not enter the emissions",
)(multimodal_tagger)
register(
    "umt-no-image-aware-wr", multimodal=True, text=SUBWORD, fixes={"esd": True, "image_aware": False},
    help="UMT without image-aware word representations: A is replaced by R",
)(multimodal_tagger)
register(
    "umt-no-visual-gate", multimodal=True, text=SUBWORD, fixes={"esd": True, "visual_gate": False},
    help="UMT without the visual gate: B = Q",
)(multimodal_tagger)
