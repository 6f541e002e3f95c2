"""The conversion matrix W^c (section 2.4): ESD span scores -> MNER label scores (eq. 7).

    E' = E + (w_ESD . t) W^c                      mix ``sum``: eq. 7 as the paper writes it
    E' = 0.5 E + 0.5 (w_ESD . t) W^c              mix ``mean``: the authors' released code

The product and the sum run in fp32 also under autocast, as the emission layers do: the CRF
sums these scores over whole sentences, where bf16's 8-bit mantissa would round them.
"""

from __future__ import annotations

import torch
from torch import nn

from umt.pipeline.models.config import EMISSION_MIXES


class LabelConversion(nn.Module):
    """(B, W, |Y|) MNER and (B, W, |Z|) ESD emissions -> (B, W, |Y|) emissions of eq. 7 (fp32).

    ``matrix`` is the (|Z|, |Y|) initialisation from ``pipeline.labels.conversion_matrix``
    (1/|C_j| where ESD label j corresponds to MNER label k, else 0). Trainable, it is a
    parameter; frozen, a buffer. The state-dict key is ``matrix`` either way, so a checkpoint
    loads whichever choice the config makes.
    """

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
