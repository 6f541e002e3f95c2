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


def quantize_int8(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` for CPU inference with int8 dynamic quantization (``--quantize int8``).

    Each ``nn.Linear`` that keeps or widens its input (the attention projections, the first
    layer of each feed-forward block: most of the encoder's time) becomes torch's dynamically
    quantized linear layer: int8 weights with one scale per output channel, each batch's
    activations quantized on the fly with one scale, fp32 out. A linear layer that narrows its
    input stays fp32: the feed-forward blocks' second layers, whose GELU inputs carry the
    outliers one activation scale clips, and the emission layers, whose scores the CRF reads.
    On the Twitter-2017 dev posts this choice changed the fewest tags of the fp32 model among
    those tried (docs/results.md). Embeddings, the CRF and the rest stay fp32. Inference only:
    the weights are rounded, so a quantized model is never trained or saved."""
    import warnings

    if device.type != "cpu":
        raise ConfigError(f"--quantize int8 is for CPU inference; the model is on {device} (use --device cpu)")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    chosen = {
        name: per_channel_dynamic_qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module.out_features >= module.in_features
    }
    with warnings.catch_warnings():  # torch announces the move of quantization to torchao; it works as is
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, chosen, dtype=torch.qint8)
