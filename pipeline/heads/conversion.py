"""The conversion matrix W^c (section 2.4): ESD span scores -> MNER label scores (eq. 7).

Everything about W^c is here: its initial value from the label names
(:func:`conversion_matrix`), the layer applying it (:class:`LabelConversion`), and its exemption
from weight decay (``no_weight_decay``, read by ``umt.pipeline.training.optim``: decay would pull
the label-correspondence prior toward zero).

    E' = E + (w_ESD . t) W^c                      mix ``sum``: eq. 7 as the paper writes it
    E' = 0.5 E + 0.5 (w_ESD . t) W^c              mix ``mean``: the authors' released code

The product and the sum run in fp32 also under autocast, as the emission layers do: the CRF
sums these scores over whole sentences, where bf16's 8-bit mantissa would round them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from umt.pipeline.labels import ESD_LABELS, LabelVocab, esd_tag
from umt.pipeline.models.config import EMISSION_MIXES


def conversion_matrix(vocab: LabelVocab, esd_labels: Sequence[str] = ESD_LABELS) -> torch.Tensor:
    """The initial conversion matrix W^c of section 2.4, shape ``(|Z|, |Y|)``, float32.

    ``W[j, k] = 1 / |C_j|`` when NER label ``Y_k`` corresponds to ESD label ``Z_j`` (same B/I/O
    prefix) and 0 otherwise, where ``C_j`` is the set of NER labels corresponding to ``Z_j``.
    A row whose ``C_j`` is empty (a vocabulary without types) stays 0.
    """
    unknown = [z for z in esd_labels if z not in ESD_LABELS]
    if unknown:
        raise ValueError(f"unknown ESD labels {unknown}: expected some of {list(ESD_LABELS)}")
    corresponds = torch.tensor(
        [[esd_tag(y) == z for y in vocab.labels] for z in esd_labels], dtype=torch.float32
    )  # (|Z|, |Y|)
    sizes = corresponds.sum(dim=1, keepdim=True).clamp(min=1.0)  # (|Z|, 1) = |C_j|
    return corresponds / sizes


class LabelConversion(nn.Module):
    """(B, W, |Y|) MNER and (B, W, |Z|) ESD emissions -> (B, W, |Y|) emissions of eq. 7 (fp32).

    ``matrix`` is the (|Z|, |Y|) initialisation (:func:`conversion_matrix`: 1/|C_j| where ESD
    label j corresponds to MNER label k, else 0). Trainable, it is a parameter; frozen, a
    buffer. The state-dict key is ``matrix`` either way, so a checkpoint loads whichever choice
    the config makes.
    """

    #: Kept out of weight decay (``umt.pipeline.training.optim``).
    no_weight_decay = True

    def __init__(self, matrix: torch.Tensor, trainable: bool, mix: str):
        super().__init__()
        if mix not in EMISSION_MIXES:
            raise ValueError(f"emission mix must be one of {', '.join(EMISSION_MIXES)}, got {mix!r}")
        self.mix = mix
        if trainable:
            self.matrix = nn.Parameter(matrix.clone().float())  # (|Z|, |Y|)
        else:
            self.register_buffer("matrix", matrix.clone().float())  # (|Z|, |Y|)

    def forward(self, emissions: torch.Tensor, span_emissions: torch.Tensor) -> torch.Tensor:
        with torch.autocast(span_emissions.device.type, enabled=False):
            converted = span_emissions.float() @ self.matrix.float()  # (B, W, |Y|) fp32
            if self.mix == "mean":
                return 0.5 * emissions.float() + 0.5 * converted  # (B, W, |Y|)
            return emissions.float() + converted  # (B, W, |Y|)
