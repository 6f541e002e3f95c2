"""The one device resolver: ``--device auto | cpu | cuda | cuda:N`` for every command, and the
``--quantize`` choices of inference (checked here, without torch; applied by
``umt.pipeline.runtime.precision.quantize_int8``)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from umt.pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: Every spelling ``--device`` accepts (checked without torch, before anything loads).
DEVICE_NAME = re.compile(r"auto|cpu|cuda(?::(\d+))?")
CHOICES = "auto, cpu, cuda or cuda:N"
#: ``--quantize``: none (fp32, the default) or int8 dynamic quantization for CPU inference.
QUANTIZE_CHOICES = ("none", "int8")


def check_device_name(name: str) -> re.Match:
    """Refuse a spelling that names no device; needs no torch, so requests call it on construction."""
    match = DEVICE_NAME.fullmatch(name)
    if not match:
        raise ConfigError(f"--device {name!r}: expected {CHOICES}")
    return match


def check_quantize(name: str) -> str:
    if name not in QUANTIZE_CHOICES:
        raise ConfigError(f"--quantize {name!r}: expected one of {', '.join(QUANTIZE_CHOICES)}")
    return name


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU; CUDA names are checked to exist."""
    import torch

    match = check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {name}: no CUDA device is available on this machine (use --device cpu)")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)
