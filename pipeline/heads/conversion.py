"""The conversion matrix W^c (section 2.4): ESD span scores -> MNER label scores (eq. 7)."""

from __future__ import annotations

import torch
from torch import nn


class LabelConversion(nn.Module):
    """(B, W, |Z|) ESD emissions -> (B, W, |Y|) emissions (w_ESD . t) W^c, added to the MNER ones.

    ``matrix`` is the (|Z|, |Y|) initialisation from ``pipeline.labels.conversion_matrix``
    (1/|C_j| where ESD label j corresponds to MNER label k, else 0). Trainable, it is a
    parameter; frozen, a buffer. The state-dict key is ``matrix`` either way, so a checkpoint
    loads whichever choice the config makes.
    """

    def __init__(self, matrix: torch.Tensor, trainable: bool):
        super().__init__()
        if trainable:
            self.matrix = nn.Parameter(matrix.clone().float())  # (|Z|, |Y|)
        else:
            self.register_buffer("matrix", matrix.clone().float())  # (|Z|, |Y|)

    def forward(self, span_emissions: torch.Tensor) -> torch.Tensor:
        return span_emissions @ self.matrix.to(span_emissions.dtype)  # (B, W, |Y|)
