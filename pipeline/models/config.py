"""The model configuration: every architectural choice of the zoo in one flat, typed record.

Flat on purpose: the trainer applies ``--set key=value`` onto it and a run directory stores it
as JSON, so every field is a bool, int, float or str. The defaults are the paper's UMT
(section 3.1: bert-base-cased, m = 12 heads, dropout 0.1, lambda 0.5). A registered model name
fixes the switches that define it (``bert-crf`` fixes ``esd=False``, ``umt-no-visual-gate`` fixes
``visual_gate=False``); the others stay free for ``--set``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from umt.pipeline.errors import ConfigError
from umt.pipeline.typed_fields import check_field_types

#: What a stored config that predates a setting was trained with (``from_dict`` fills it in).
BEFORE_SETTING = {"adacan_tanh": False}
MAX_SUGGESTED_HEADS = 32  # head counts listed when heads does not divide d
#: Below this a window cannot hold a word beside a tokenizer's special tokens ([CLS], [SEP], ...).
MIN_MAX_LENGTH = 8
#: The fusions ``fusion`` may name: name -> ``"module:Class"`` of a
#: :class:`umt.pipeline.modules.fusion.Fusion` (imported when a model is built). A new fusion is
#: its module plus one entry here.
FUSIONS = {
    "mmi": "umt.pipeline.modules.mmi:MultimodalInteraction",
    "gvatt": "umt.pipeline.modules.gvatt:GatedVisualAttention",
    "adacan": "umt.pipeline.modules.adacan:AdaptiveCoAttention",
}
EMISSION_MIXES = ("sum", "mean")  # eq. 7 as written, or the released code's 0.5 / 0.5
CHAR_ENCODERS = ("none", "cnn", "lstm")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one model of the zoo.

    encoder: Hugging Face model name or local model folder (fine-tuned).
    pretrained_encoder: load the encoder's pretrained weights; False builds it from its config
        with random weights (reloading a run directory whose checkpoint carries every weight,
        or tiny test models).
    heads: attention heads m of every layer added on top of the encoder; must divide d.
    dropout: dropout of the added layers and before every emission layer.
    esd_weight: lambda, the weight of the ESD loss (section 2.5).
    conversion_trainable: whether W^c keeps learning after its initialisation. True by default:
        the paper says W^c is *initialised* from the label correspondence (section 2.4), which
        reads as a learned parameter with an informed start; learning can also discover soft
        correspondences the prior leaves at 0 (an ESD ``B`` that is really an ``I-ORG`` after a
        tokenisation quirk). The authors' released code passes W^c as a fixed input tensor, so
        ``conversion_trainable=False`` reproduces that code.
    visual_dim, grid: shape of one image's feature grid (ResNet-152: 2048 x 7*7 blocks); ``umt train``
    sets both from the cache it reads.
    esd: the auxiliary entity span detection branch (section 2.4; False gives MT, section 2.3).
    conversion: add the ESD emissions to the MNER emissions through W^c (eq. 7); False keeps ESD
        as an auxiliary loss only.
    emission_mix: how eq. 7 combines them: ``sum`` (E + E_ESD W^c, as the paper writes it) or
        ``mean`` (0.5 E + 0.5 E_ESD W^c, as the authors' released code does).
    image_aware: the image-aware word representations A (False: A is replaced by R).
    visual_gate: the visual gate of eq. 3 (False: B = Q).
    crf: a CRF over the MNER emissions (False: a per-word softmax).
    fusion: the text-image fusion of a multimodal model, a name of :data:`FUSIONS`: ``mmi``
        (section 2.3), ``gvatt`` (Lu et al., 2018) or ``adacan`` (Zhang et al., 2018).
    adacan_tanh: AdaCAN projects the regions as Zhang et al. wrote it, tanh(W_u U + b) (True);
        False projects them linearly, as every AdaCAN run trained before this setting existed
        did (a stored config without the key reloads that way).

    The text side (how posts become encoder inputs) reads these:

    max_length: the most encoder positions of one window: sub-word pieces with the special
        tokens for a Hugging Face encoder, words for the word-level side (paper: 128). A longer
        post is cut into overlapping windows, each word predicted by exactly one of them.
    stride: positions of context neighbouring windows of an over-long post share.

    The word-level text side (the BiLSTM baselines) reads these; the others never do:

    word_vectors: pre-trained word vectors (GloVe / word2vec text file, or a ``.npy`` matrix with
        its vocabulary file), or ``random`` for randomly initialised embeddings.
    vectors_limit: the most frequent words of the vectors file kept in the vocabulary beside
        every training word (vectors files are sorted by frequency).
    word_dim: size of randomly initialised word embeddings (pre-trained vectors bring their own).
    char_encoder: ``none``, ``cnn`` (Ma and Hovy, 2016) or ``lstm`` (Lample et al., 2016).
    char_dim: character embedding size.
    char_hidden: character CNN filters, or character LSTM units per direction.
    case_dim: size of the word-casing embedding (Huang et al.'s spelling feature); 0 for none.
    lstm_hidden: word BiLSTM units per direction (the encoder's d is twice this).
    """

    encoder: str = "bert-base-cased"
    pretrained_encoder: bool = True
    heads: int = 12
    dropout: float = 0.1
    esd_weight: float = 0.5
    conversion_trainable: bool = True
    visual_dim: int = 2048  # ResNet-152's channels; umt train sets it from the cache
    grid: int = 49  # ResNet-152's 7 x 7 blocks; umt train sets it from the cache
    esd: bool = True
    conversion: bool = True
    emission_mix: str = "sum"
    image_aware: bool = True
    visual_gate: bool = True
    crf: bool = True
    fusion: str = "mmi"
    adacan_tanh: bool = True
    max_length: int = 128
    stride: int = 32
    word_vectors: str = ""
    vectors_limit: int = 100_000
    word_dim: int = 100
    char_encoder: str = "none"
    char_dim: int = 30
    char_hidden: int = 30
    case_dim: int = 0
    lstm_hidden: int = 200

    def __post_init__(self) -> None:
        check_field_types(self, "model config: ")
        if self.heads < 1:
            raise ConfigError(f"model config: heads must be at least 1, got {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model config: dropout must be in [0, 1), got {self.dropout}")
        if self.esd_weight < 0.0:
            raise ConfigError(f"model config: esd_weight must be >= 0, got {self.esd_weight}")
        if self.visual_dim < 1 or self.grid < 1:
            raise ConfigError(f"model config: visual_dim and grid must be >= 1, got {self.visual_dim} and {self.grid}")
        if not self.encoder:
            raise ConfigError("model config: encoder must name a Hugging Face model or a local folder")
        for name, allowed in (("fusion", FUSIONS), ("char_encoder", CHAR_ENCODERS), ("emission_mix", EMISSION_MIXES)):
            if getattr(self, name) not in allowed:
                got = getattr(self, name)
                raise ConfigError(f"model config: {name} must be one of {', '.join(allowed)}, got {got!r}")
        if self.max_length < MIN_MAX_LENGTH:
            raise ConfigError(f"--set max_length must be at least {MIN_MAX_LENGTH}, got {self.max_length}")
        if not 0 <= self.stride < self.max_length // 2:
            raise ConfigError(
                f"--set stride must be in [0, max_length / 2) = [0, {self.max_length // 2}), got {self.stride}"
            )
        sizes = ("vectors_limit", "word_dim", "char_dim", "char_hidden", "lstm_hidden")
        small = [f"{name}={getattr(self, name)}" for name in sizes if getattr(self, name) < 1]
        if small or self.case_dim < 0:
            shown = ", ".join(small) or f"case_dim={self.case_dim}"
            raise ConfigError(f"model config: sizes must be >= 1 (case_dim >= 0), got {shown}")

    def check_hidden_size(self, hidden_size: int) -> None:
        """The added layers split d into ``heads`` equal parts (d/m in eq. 1)."""
        if hidden_size % self.heads:
            divisors = [m for m in range(1, MAX_SUGGESTED_HEADS + 1) if hidden_size % m == 0]
            nearest = min(divisors, key=lambda m: abs(m - self.heads))
            raise ConfigError(
                f"heads={self.heads} must divide the encoder's hidden size {hidden_size} ({self.encoder}); "
                f"use e.g. --set heads={nearest} (divisors up to {MAX_SUGGESTED_HEADS}: {divisors})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from ``to_dict`` output; unknown keys fail. A key it lacks takes the value runs
        had before the setting existed (:data:`BEFORE_SETTING`), or else its default."""
        data = {**BEFORE_SETTING, **data}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model config: unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)
