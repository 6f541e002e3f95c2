"""``--precision``: the autocast dtype of training and evaluation, and what it needs.

``auto`` is bf16 autocast on a CUDA device that supports it and fp32 elsewhere (on this kind of
CPU, bf16 runs about 10x slower than fp32). ``fp16`` uses a gradient scaler and needs CUDA.
On CUDA, fp32 matrix products may use TF32 tensor cores. The emission scores and the CRF are
computed in fp32 under every setting (``heads.emissions``, ``heads.crf``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from umt.pipeline.errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    name: str  # fp32, bf16 or fp16: what ``auto`` resolved to
    device_type: str

    @property
    def dtype(self) -> torch.dtype | None:
        return _DTYPES.get(self.name)

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 (whose gradients underflow without one); None otherwise."""
        return torch.amp.GradScaler(self.device_type) if self.name == "fp16" else None


def resolve_precision(name: str, device: torch.device) -> Precision:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if name == "auto":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    elif name == "auto":
        name = "fp32"
    elif name == "fp16":
        raise ConfigError("--precision fp16 needs a CUDA device (use fp32 or bf16 on a CPU)")
    return Precision(name, device.type)
