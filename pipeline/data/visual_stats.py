"""Optional per-channel standardisation of the cached visual grids.

The paper feeds the raw ResNet-152 grid U to V = W_u U. That is the default here too. With
``--set standardize_visual=true`` every one of the grid's channels (2048 for ResNet-152) is shifted and scaled by its
mean and standard deviation over the *training* images' blocks: an affine reparametrisation
of W_u (the model can express the same functions), which only changes the optimisation's
starting point. It matters when the features' scale is far from the encoder's, as with an
untrained backbone (``--weights random``: values around 1e7), which the demo uses.

The statistics are computed once per run from the training split, stored in the run
directory (``visual_stats.safetensors``, see ``umt.pipeline.run_dir``) and applied again when the run is
reopened, so evaluation and prediction see exactly the features training saw.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

#: Added to the standard deviation so a channel that never fires divides by ~1, not 0.
_EPS = 1e-6


@dataclass
class VisualStats:
    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,)
    images: int

    def state(self) -> dict:
        """What a run directory stores (``RunDir.save_visual_stats``)."""
        return {"mean": self.mean, "std": self.std, "images": self.images}

    @classmethod
    def from_state(cls, state: dict) -> VisualStats:
        """Statistics read back from a run directory, checked: a crafted file is a ValueError."""
        mean, std = state["mean"], state["std"]
        for name, value in (("mean", mean), ("std", std)):
            if not isinstance(value, torch.Tensor) or value.ndim != 1 or not value.is_floating_point():
                raise ValueError(f"{name} must be a 1-d float tensor")
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} holds non-finite values")
        if mean.shape != std.shape or not bool((std > 0).all()):
            raise ValueError(f"mean {tuple(mean.shape)} and std {tuple(std.shape)} must match and std be positive")
        return cls(mean.float(), std.float(), int(state["images"]))


def compute_stats(features, image_ids: Iterable[str]) -> VisualStats | None:
    """Channel mean and std over every block of the distinct ``image_ids`` that have a grid."""
    total = squares = None
    images = 0
    for image_id in sorted(set(image_ids)):
        grid, present = features.get(image_id)  # (blocks, C) float32
        if not present:
            continue
        grid = grid.double()
        total = grid.sum(0) if total is None else total + grid.sum(0)  # (C,)
        squares = (grid * grid).sum(0) if squares is None else squares + (grid * grid).sum(0)  # (C,)
        images += 1
    if images == 0:
        return None
    blocks = images * grid.shape[0]
    mean = total / blocks  # (C,)
    var = (squares / blocks - mean * mean).clamp_min(0.0)  # (C,)
    return VisualStats(mean.float(), (var.sqrt() + _EPS).float(), images)


class StandardizedFeatures:
    """A feature cache whose present grids come out standardised; absent ones stay zeros."""

    def __init__(self, features, stats: VisualStats):
        self.features = features
        self.stats = stats
        self.manifest = features.manifest
        self.shape = features.shape

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.features

    def status(self, image_id: str) -> str:
        return self.features.status(image_id)

    def get(self, image_id: str) -> tuple[torch.Tensor, bool]:
        grid, present = self.features.get(image_id)  # (blocks, C)
        if not present:
            return grid, False
        return (grid - self.stats.mean) / self.stats.std, True  # (blocks, C)
