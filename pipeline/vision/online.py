"""Grids for new images at prediction time, computed exactly as the run's feature cache was.

A run records the pinned settings of the cache it trained on (backbone, weights, preprocessing,
storage dtype: ``config.json``'s ``features.manifest``). :class:`ImageFeaturizer` checks that
this version of umt computes the same thing before any image is read, then builds the same
frozen backbone (``vision.backbone``), decodes with the same preprocessing (``vision.decode``),
rounds through the same storage dtype and keeps every grid on disk under the sha256 of the
image file's bytes, so tagging the same image again (even under another name) costs a file
read, and a call whose images are all known never builds the backbone.

Layout of the disk cache: ``<cache_dir>/<settings digest>/<sha[:2]>/<sha>.npy``, one float
array (7, 7, 2048) per image in the storage dtype; the settings digest keeps grids of different
backbones or weights apart. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.cache.durable import atomic_write_bytes
from umt.cache.format import Status
from umt.cache.grid import BLOCKS, CHANNELS, GRID
from umt.pipeline.errors import ConfigError
from umt.pipeline.vision.backbone import (
    BACKBONE,
    WEIGHTS_IMAGENET,
    WEIGHTS_RANDOM,
    build_extractor,
    file_sha256,
    weights_identity,
)
from umt.pipeline.vision.decode import PREPROCESSING, decode

DEFAULT_CACHE_DIR = Path("~/.cache/umt/predict-features")
CACHE_ENV = "UMT_CACHE_DIR"
#: What a run trained before the dtype was recorded read: the extraction default.
DEFAULT_DTYPE = "float16"


def default_cache_dir() -> Path:
    """``$UMT_CACHE_DIR/predict-features`` if set, else ``~/.cache/umt/predict-features``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) / "predict-features" if root else DEFAULT_CACHE_DIR.expanduser()


def _weights_spec(recorded: dict[str, Any], weights: str | None) -> str:
    """The ``--weights`` value that rebuilds the recorded backbone, or a ConfigError saying why not."""
    source = recorded.get("source")
    if weights is not None:
        given = weights_identity(weights)
        if given != recorded:
            raise ConfigError(
                f"--weights {weights}: these are not the backbone weights the run's features were computed "
                f"with ({json.dumps(recorded)}); the model would see features it was never trained on"
            )
        return weights
    if source == "random":
        return WEIGHTS_RANDOM
    if source == "torchvision":
        return WEIGHTS_IMAGENET
    raise ConfigError(
        "the run's features were computed with ResNet-152 weights from a file "
        f"(sha256 {recorded.get('sha256', '?')}): pass that file with --weights PATH"
    )


@dataclass
class Featurized:
    """The outcome for one image file: its content key, or why it has no grid."""

    key: str | None
    reason: str = ""


class ImageFeaturizer:
    """Featurise image files as the run's cache did; the grids are served by :meth:`features`."""

    def __init__(
        self,
        recorded: dict[str, Any],
        weights: str | None = None,
        cache_dir: Path | None = None,
        device: torch.device | None = None,
        batch_size: int = 16,
    ):
        manifest = recorded.get("manifest", {})
        if manifest.get("backbone") != BACKBONE:
            raise ConfigError(
                f"the run's features come from backbone {manifest.get('backbone')!r}; umt computes {BACKBONE}"
            )
        if manifest.get("preprocessing") != PREPROCESSING:
            raise ConfigError(
                "the run's features were computed with other image preprocessing than this version of umt "
                "uses; pass --features with a cache extracted by the run's version"
            )
        self.weights = _weights_spec(manifest.get("weights", {}), weights)
        self.dtype = np.dtype(manifest.get("dtype", DEFAULT_DTYPE))
        settings = json.dumps({k: manifest.get(k) for k in ("backbone", "weights", "preprocessing")}, sort_keys=True)
        settings += str(self.dtype)
        self.folder = (cache_dir or default_cache_dir()) / hashlib.sha256(settings.encode()).hexdigest()[:16]
        self.device = device or torch.device("cpu")
        self.batch_size = batch_size
        self._extractor = None
        self.grids: dict[str, np.ndarray] = {}  # key -> (7, 7, 2048), of the last featurize call only
        self.computed = 0  # images run through the backbone by this featurizer (the rest came from disk)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def _forward(self, pixels: list[np.ndarray]) -> np.ndarray:
        if self._extractor is None:
            self._extractor = build_extractor(self.weights).to(self.device)
        batch = torch.from_numpy(np.stack(pixels)).to(self.device)  # (n, 224, 224, 3) uint8
        with torch.inference_mode():
            grids = self._extractor(batch).float().cpu().numpy()  # (n, 7, 7, 2048)
        return grids.astype(self.dtype)

    def featurize(self, paths: list[Path]) -> list[Featurized]:
        """One outcome per path; grids of readable images are then in :attr:`grids` (batched,
        each distinct image computed once, read from disk when an earlier call computed it). Only
        this call's grids stay in memory, so a stream of calls runs in constant memory."""
        self.grids = {}
        out: list[Featurized] = []
        todo: dict[str, Path] = {}
        for path in paths:
            try:
                key = file_sha256(path)
            except OSError as e:
                out.append(Featurized(None, f"cannot read {path}: {e.strerror}"))
                continue
            out.append(Featurized(key))
            if key in self.grids or key in todo:
                continue
            stored = self._path(key)
            if stored.is_file():
                self.grids[key] = np.load(stored)
            else:
                todo[key] = path
        failed = self._compute(todo)
        return [Featurized(None, failed[o.key]) if o.key in failed else o for o in out]

    def _compute(self, todo: dict[str, Path]) -> dict[str, str]:
        """Run the backbone over ``todo`` (key -> file) in batches; the reasons of unreadable ones."""
        failed: dict[str, str] = {}
        keys, pixels = [], []

        def flush() -> None:
            if not keys:
                return
            for key, grid in zip(keys, self._forward(pixels), strict=True):
                buffer = io.BytesIO()
                np.save(buffer, grid)
                self._path(key).parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(self._path(key), buffer.getvalue())
                self.grids[key] = grid
                self.computed += 1
            keys.clear()
            pixels.clear()

        for key, path in todo.items():
            decoded = decode(path)
            if decoded.status is not Status.OK:
                failed[key] = f"{path}: {decoded.reason}"
                continue
            keys.append(key)
            pixels.append(decoded.pixels)
            if len(keys) == self.batch_size:
                flush()
        flush()
        return failed

    def features(self) -> GridTable:
        return GridTable(self.grids)


class GridTable:
    """Grids held in memory, read through the feature-cache interface the datasets use."""

    def __init__(self, grids: dict[str, np.ndarray]):
        self.grids = grids
        self.manifest: dict[str, Any] = {}

    def __contains__(self, key: object) -> bool:
        return key in self.grids

    def status(self, key: str) -> str:
        return Status.OK.label if key in self.grids else Status.MISSING.label

    def get(self, key: str) -> tuple[torch.Tensor, bool]:
        grid = self.grids.get(key)
        if grid is None:
            return torch.zeros(BLOCKS, CHANNELS), False
        return torch.from_numpy(grid.astype(np.float32).reshape(GRID * GRID, CHANNELS)), True  # (49, 2048)
