"""The one device resolver: ``--device auto | cpu | cuda | cuda:N`` for every command."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from umt.pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: Every spelling ``--device`` accepts (checked without torch, before anything loads).
DEVICE_NAME = re.compile(r"auto|cpu|cuda(?::(\d+))?")
CHOICES = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str) -> re.Match:
    """Refuse a spelling that names no device; needs no torch, so requests call it on construction."""
    match = DEVICE_NAME.fullmatch(name)
    if not match:
        raise ConfigError(f"--device {name!r}: expected {CHOICES}")
    return match


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
