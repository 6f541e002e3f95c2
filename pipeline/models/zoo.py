"""The zoo: what each registered name builds (paper section 3.2, Table 2, and the ablations of Table 3).

Two builders, text-only and multimodal; each name is one of them, a text side, the switches it
fixes and the defaults its literature trains it with. Switches a name does not fix stay free
(``--model umt --set visual_gate=false`` is the same model as ``umt-no-visual-gate``).
Text-only models never read the fusion switches. The BERT rows read text through the Hugging
Face sub-word side, the BiLSTM rows through the word-level side (pre-trained vectors,
characters); a fusion (MMI, GVATT, AdaCAN) is one module whichever side feeds it.

The builders import the model code when called, so listing or checking names stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from umt.pipeline.models.config import FUSIONS, ModelConfig
from umt.pipeline.models.registry import register, resolve

if TYPE_CHECKING:
    from umt.pipeline.labels import LabelVocab
    from umt.pipeline.models.tagger import Tagger
    from umt.pipeline.modules.encoders import Encoder
    from umt.pipeline.modules.fusion import Fusion

SUBWORD = "umt.pipeline.text.subword:SubwordTextSide"
WORDS = "umt.pipeline.text.words:WordTextSide"
CHECK_ENCODER = "umt.pipeline.text.hf:check_encoder"
CHECK_VECTORS = "umt.pipeline.text.vectors:check_word_vectors"

#: How the BiLSTM baselines train: Ma and Hovy (2016), section 4.1 and 4.2 (SGD with momentum
#: 0.9, lr 0.015 decayed per epoch as lr / (1 + 0.05 t), gradient norm clipped at 5, batch 10,
#: dropout 0.5 on the embeddings and on the BiLSTM's output). Epochs: docs/training.md, "The BiLSTM baselines".
LSTM_TRAINING = {
    "optimizer": "sgd", "lr": 0.015, "momentum": 0.9, "schedule": "inverse", "lr_decay": 0.05,
    "warmup": 0.0, "weight_decay": 0.0, "max_grad_norm": 5.0, "batch_size": 10, "epochs": 50,
    "dropout": 0.5, "head_lr": 0.0,
}  # fmt: skip
#: Sizes from each paper: Huang et al. (2015) with a casing embedding for their spelling
#: features; Ma and Hovy's character CNN (30-d characters, 30 filters of width 3, 200 units per
#: direction); Lample et al.'s character BiLSTM (25-d characters, 25 units per direction, 100
#: units per direction for the words).
HUANG = {**LSTM_TRAINING, "lstm_hidden": 100, "case_dim": 10}
MA_HOVY = {**LSTM_TRAINING, "lstm_hidden": 200, "char_dim": 30, "char_hidden": 30}
LAMPLE = {**LSTM_TRAINING, "lstm_hidden": 100, "char_dim": 25, "char_hidden": 25}

# ---- the paper's settings (``--recipe paper``): section 3.1 --------------------------------------
#: "For each unimodal and multimodal approach compared in the experiments, the maximum length of
#: the sentence input and the batch size are respectively set to 128 and 16."
PAPER_EVERY_SYSTEM = {"max_length": 128, "batch_size": 16}
#: UMT's: "most hyperparameter settings follow Devlin et al. (2018)" (AdamW, weight decay 0.01,
#: 10% linear warm-up, gradient norm 1.0) with the learning rate 5e-5 (for every parameter:
#: the paper names one rate, the authors' code uses one), dropout 0.1, lambda 0.5 and m = 12
#: heads. The BERT baselines train with the same settings (the paper gives them no others).
PAPER_BERT = {
    **PAPER_EVERY_SYSTEM, "optimizer": "adamw", "lr": 5e-5, "head_lr": 0.0, "schedule": "linear", "warmup": 0.1,
    "weight_decay": 0.01, "max_grad_norm": 1.0, "dropout": 0.1, "esd_weight": 0.5, "heads": 12,
}  # fmt: skip
#: The paper states no epoch count; these are the authors' released script's (jefferyYu/UMT,
#: run_mtmner_crf.py). Another dataset keeps the general default.
PAPER_EPOCHS = {"twitter2015": {"epochs": 24}, "twitter2017": {"epochs": 22}}
#: The BiLSTM rows keep their own papers' training (above) with the two settings section 3.1
#: gives every system.
PAPER_HUANG, PAPER_MA_HOVY, PAPER_LAMPLE = ({**d, **PAPER_EVERY_SYSTEM} for d in (HUANG, MA_HOVY, LAMPLE))


def text_tagger(config: ModelConfig, vocab: LabelVocab, encoder: Encoder) -> Tagger:
    """Encoder + emission layer + CRF or softmax."""
    from umt.pipeline.models.tagger import Tagger

    return Tagger(config, vocab, encoder, fusion=None)


def make_fusion(config: ModelConfig, d: int) -> Fusion:
    """The fusion ``config.fusion`` names (:data:`umt.pipeline.models.config.FUSIONS`), over
    text states of width ``d``."""
    return resolve(FUSIONS[config.fusion]).from_config(config, d)


def multimodal_tagger(config: ModelConfig, vocab: LabelVocab, encoder: Encoder) -> Tagger:
    """Encoder + a fusion (MMI, GVATT or AdaCAN) + CRF, with the ESD branch and W^c when switched on."""
    from umt.pipeline.models.tagger import Tagger

    if config.esd:
        config.check_hidden_size(encoder.hidden_size)  # the span detector's T splits d into heads
    return Tagger(config, vocab, encoder, make_fusion(config, encoder.hidden_size))


BERT = {"text": SUBWORD, "check": CHECK_ENCODER, "paper_settings": PAPER_BERT, "paper_datasets": PAPER_EPOCHS}
LSTM = {"text": WORDS, "check": CHECK_VECTORS}
#: The switches of the text-only BiLSTM rows; their multimodal rows add a fusion to them.
WORDS_ONLY = {"esd": False, "crf": True, "char_encoder": "none"}
CHAR_CNN = {**WORDS_ONLY, "char_encoder": "cnn"}
CHAR_LSTM = {**WORDS_ONLY, "char_encoder": "lstm"}
BERT_CRF = {"esd": False, "crf": True}

# ---- Table 2, text only ------------------------------------------------------------------------
register(
    "bilstm-crf",
    multimodal=False,
    **LSTM,
    fixes=WORDS_ONLY,
    defaults=HUANG,
    paper_settings=PAPER_HUANG,
    paper="BiLSTM-CRF (Huang et al., 2015): 64.42 / 76.31",
    help="word vectors (+ casing) -> BiLSTM -> CRF",
)(text_tagger)
register(
    "cnn-bilstm-crf",
    multimodal=False,
    **LSTM,
    fixes=CHAR_CNN,
    defaults=MA_HOVY,
    paper_settings=PAPER_MA_HOVY,
    paper="CNN-BiLSTM-CRF (Ma and Hovy, 2016): 67.15 / 79.37",
    help="word vectors + character CNN -> BiLSTM -> CRF",
)(text_tagger)
register(
    "hbilstm-crf",
    multimodal=False,
    **LSTM,
    fixes=CHAR_LSTM,
    defaults=LAMPLE,
    paper_settings=PAPER_LAMPLE,
    paper="HBiLSTM-CRF (Lample et al., 2016): 69.17 / 80.37",
    help="word vectors + character BiLSTM -> BiLSTM -> CRF",
)(text_tagger)
register(
    "bert-softmax",
    multimodal=False,
    **BERT,
    fixes={"esd": False, "crf": False},
    paper="BERT (Devlin et al., 2019): 71.32 / 82.95",
    help="BERT: encoder + per-word softmax (text only)",
)(text_tagger)
register(
    "bert-crf",
    multimodal=False,
    **BERT,
    fixes=BERT_CRF,
    paper="BERT-CRF: 71.81 / 83.44",
    help="BERT-CRF: encoder + CRF (text only)",
)(text_tagger)

# ---- Table 2, text + image -----------------------------------------------------------------------
register(
    "gvatt-hbilstm-crf",
    multimodal=True,
    **LSTM,
    fixes={**CHAR_LSTM, "fusion": "gvatt"},
    defaults=LAMPLE,
    paper_settings=PAPER_LAMPLE,
    paper="GVATT-HBiLSTM-CRF (Lu et al., 2018): 70.80 / 81.87",
    help="HBiLSTM-CRF + sentence-guided visual attention and visual modulation gate",
)(multimodal_tagger)
register(
    "adacan-cnn-bilstm-crf",
    multimodal=True,
    **LSTM,
    fixes={**CHAR_CNN, "fusion": "adacan"},
    defaults=MA_HOVY,
    paper_settings=PAPER_MA_HOVY,
    paper="AdaCAN-CNN-BiLSTM-CRF (Zhang et al., 2018): 70.69 / 82.15",
    help="CNN-BiLSTM-CRF + adaptive co-attention, gated fusion and filtration gate",
)(multimodal_tagger)
register(
    "gvatt-bert-crf",
    multimodal=True,
    **BERT,
    fixes={**BERT_CRF, "fusion": "gvatt"},
    paper="GVATT-BERT-CRF: 71.70 / 84.01",
    help="BERT-CRF + the GVATT fusion",
)(multimodal_tagger)
register(
    "adacan-bert-crf",
    multimodal=True,
    **BERT,
    fixes={**BERT_CRF, "fusion": "adacan"},
    paper="AdaCAN-BERT-CRF: 72.15 / 84.10",
    help="BERT-CRF + the AdaCAN fusion",
)(multimodal_tagger)
register(
    "mt",
    multimodal=True,
    **BERT,
    fixes={"esd": False, "fusion": "mmi"},
    paper="MT-BERT-CRF: 72.58 / 84.42",
    help="MT-BERT-CRF (section 2.3): encoder + multimodal interaction (MMI) + CRF",
)(multimodal_tagger)
register(
    "umt",
    multimodal=True,
    **BERT,
    fixes={"esd": True, "fusion": "mmi"},
    paper="UMT-BERT-CRF: 73.41 / 85.31",
    help="UMT-BERT-CRF (section 2.4): MT + text-only span detection guiding it through W^c",
)(multimodal_tagger)

# ---- Table 3, the ablations of UMT ---------------------------------------------------------------
register(
    "umt-no-esd",
    multimodal=True,
    **BERT,
    fixes={"esd": False, "fusion": "mmi"},
    paper="Table 3: w/o ESD module",
    help="UMT without the ESD module (Table 3): the same model as mt",
)(multimodal_tagger)
register(
    "umt-no-conversion",
    multimodal=True,
    **BERT,
    fixes={"esd": True, "conversion": False, "fusion": "mmi"},
    paper="Table 3: w/o conversion matrix",
    help="UMT with ESD as an auxiliary loss only: its span scores do not enter the emissions",
)(multimodal_tagger)
register(
    "umt-no-image-aware-wr",
    multimodal=True,
    **BERT,
    fixes={"esd": True, "image_aware": False, "fusion": "mmi"},
    paper="Table 3: w/o image-aware WR",
    help="UMT without image-aware word representations: A is replaced by R",
)(multimodal_tagger)
register(
    "umt-no-visual-gate",
    multimodal=True,
    **BERT,
    fixes={"esd": True, "visual_gate": False, "fusion": "mmi"},
    paper="Table 3: w/o visual gate",
    help="UMT without the visual gate: B = Q",
)(multimodal_tagger)
