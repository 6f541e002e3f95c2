"""The HDF5 image-feature store written by ``umt extract-images`` and read by stage two.

The file layout is documented in :mod:`cache.format`; the manifest in :mod:`cache.manifest`.
"""

from cache.format import BLOCKS, CHANNELS, GRID, Status
from cache.paths import default_cache_path
from cache.reader import FeatureCache, UnknownImageError

__all__ = ["BLOCKS", "CHANNELS", "GRID", "FeatureCache", "Status", "UnknownImageError", "default_cache_path"]
