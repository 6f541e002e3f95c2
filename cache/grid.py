"""The shape of one image's features: a grid of blocks, each a vector, read from the manifest.

A backbone turns an image into ``rows x cols`` blocks of ``channels`` values: the paper's
ResNet-152 (section 2.2) gives 7 x 7 blocks of 2048 for a 224 x 224 image, CLIP ViT-B/32 7 x 7
patches of 768, ViT-B/16 14 x 14 patches of 768 (``umt.pipeline.vision.backbones`` lists them).
The cache stores a grid as (rows, cols, channels); models read it as the sequence of
``rows * cols`` blocks in raster order, (blocks, channels). The shape is recorded in every
cache manifest (``"grid": [rows, cols]``, ``"channels": C``) and read back from there by
:meth:`GridShape.from_manifest`, which bounds it, since a cache may come from anyone. No heavy
imports here: the command line and the model config read this too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Bounds on a recorded shape: far above any vision backbone (ViT-L/14 at 448 pixels is 32 x 32
#: x 1024), low enough that one image's grid is a small read.
MAX_SIDE = 64
MAX_CHANNELS = 8192
MAX_GRID_VALUES = 1 << 21  # 8 MB of float32 per image


class GridShapeError(ValueError):
    """A recorded shape that is not one: the caller names the file it came from."""


def _side(value: Any, what: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise GridShapeError(f"{what} is {value!r}, not an integer in [1, {limit}]")
    return value


@dataclass(frozen=True)
class GridShape:
    rows: int
    cols: int
    channels: int

    def __post_init__(self) -> None:
        _side(self.rows, "the grid's row count", MAX_SIDE)
        _side(self.cols, "the grid's column count", MAX_SIDE)
        _side(self.channels, "the channel count", MAX_CHANNELS)
        if self.blocks * self.channels > MAX_GRID_VALUES:
            raise GridShapeError(f"a {self} grid holds more than {MAX_GRID_VALUES} values")

    @property
    def blocks(self) -> int:
        """Blocks per image: the length of the sequence the models read."""
        return self.rows * self.cols

    @property
    def stored(self) -> tuple[int, int, int]:
        """(rows, cols, channels): one image's array in the cache."""
        return (self.rows, self.cols, self.channels)

    @property
    def sequence(self) -> tuple[int, int]:
        """(blocks, channels): one image's grid as the models read it."""
        return (self.blocks, self.channels)

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}x{self.channels}"

    def to_manifest(self) -> dict[str, Any]:
        """The manifest entries that record this shape."""
        return {"grid": [self.rows, self.cols], "channels": self.channels}

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> GridShape:
        """The shape a manifest records; :class:`GridShapeError` when it records none or a bad one."""
        grid, channels = manifest.get("grid"), manifest.get("channels")
        if not isinstance(grid, list) or len(grid) != 2:
            raise GridShapeError(f"its manifest's grid is {grid!r}, not [rows, cols]")
        return cls(grid[0], grid[1], channels)  # checked by __post_init__
