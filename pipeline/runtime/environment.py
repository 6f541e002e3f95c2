"""What a result was computed with: package versions and the machine, for run directories and
cache manifests alike."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

#: Every package whose version can change a number umt writes.
PACKAGES = (
    "umt",
    "torch",
    "torchvision",
    "transformers",
    "tokenizers",
    "pytorch-crf",
    "seqeval",
    "h5py",
    "pillow",
    "numpy",
)


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """``{package: version}``; None for a package that is not installed."""
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment(device: Any) -> dict[str, Any]:
    """Python, platform, package versions, device (and GPU name), torch threads, command line."""
    import torch

    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "argv": sys.argv,
    }
    if getattr(device, "type", None) == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
