"""The storage layer: the HDF5 image-feature store and durable file writes.

``extract-images`` writes a cache through :class:`umt.cache.transaction.CacheTransaction`;
stage two reads it with :class:`umt.cache.reader.FeatureCache`. The file layout is documented in
:mod:`umt.cache.format`, the manifest in :mod:`umt.cache.manifest`, the grid shape in
:mod:`umt.cache.grid`. This package imports nothing else of umt.

Names are imported lazily, so light modules (the lock, the grid shape, the errors) can be used
without loading h5py and torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CacheError": "umt.cache.errors",
    "FeatureCache": "umt.cache.reader",
    "GridShape": "umt.cache.grid",
    "Status": "umt.cache.format",
    "UnknownImageError": "umt.cache.reader",
    "default_cache_path": "umt.cache.paths",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'umt.cache' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
