"""The frozen extractor every backbone is run through: uint8 RGB pixels in, a grid out, channels last.

A backbone family supplies the *trunk*: a module from a normalised float image ``(B, 3, H_in, W_in)``
to a feature map ``(B, C, rows, cols)`` (a CNN's last stage; a ViT's patch tokens laid back on
their grid). Normalisation lives here, in the module, so that workers ship uint8 (four times
less data than float) and, on a GPU, the arithmetic happens on the device. The arithmetic is
the one of torchvision's ``ToTensor`` + ``Normalize``, in that order, with the backbone's mean
and std; for ResNet-152 it is the arithmetic of every cache written before backbones were a
choice, so those caches are rewritten bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from umt.cache.grid import GridShape
from umt.pipeline.vision.decode import UINT8_MAX

#: The seed of every ``--weights random`` network, recorded in the manifest's weights identity.
RANDOM_SEED = 0


def file_sha256(path: Path) -> str:
    """The hex sha256 of a weights file's bytes: how a manifest names weights only the user has."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextlib.contextmanager
def seeded_init() -> Iterator[None]:
    """Build ``--weights random`` networks inside: fixed weights without touching the caller's RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        yield


class GridExtractor(nn.Module):
    """``trunk`` (see the module docstring) behind the backbone's normalisation; ``grid`` is the
    shape it must give, checked on every batch (a wrongly built trunk fails, not the cache)."""

    def __init__(self, trunk: nn.Module, grid: GridShape, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.trunk = trunk
        self.grid = grid
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        # An NHWC tensor seen as NCHW is exactly the channels_last layout: no copy.
        x = pixels.permute(0, 3, 1, 2).float()  # (B, 3, H_in, W_in) channels_last
        x = x.div(UINT8_MAX).sub(self.mean).div(self.std)  # same arithmetic as ToTensor + Normalize
        x = x.contiguous(memory_format=torch.channels_last)
        fmap = self.trunk(x)  # (B, C, rows, cols)
        expected = (self.grid.channels, self.grid.rows, self.grid.cols)
        if tuple(fmap.shape[1:]) != expected:
            raise RuntimeError(f"the backbone gave a {tuple(fmap.shape[1:])} map, expected {expected} (C, rows, cols)")
        return fmap.permute(0, 2, 3, 1)  # (B, rows, cols, C); contiguous for a channels_last map
