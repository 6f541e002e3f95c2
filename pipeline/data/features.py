"""Finding and opening the image-feature cache that stage two reads (never pixels).

In umt, *features* always means image features: the 7x7x2048 grids of stage one. A
``features`` object is a source of them (``__contains__``, ``status(id)``, ``get(id) -> (grid,
present)``): the HDF5 cache (``umt.cache.reader.FeatureCache``), the same standardised
(``umt.pipeline.data.visual_stats.StandardizedFeatures``), or the grids ``umt predict``
computed for new images. ``--features`` names a cache file; a run records the cache it read
as ``RunConfig.cache`` (config.json's ``"features"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from umt.cache.paths import default_cache_path
from umt.pipeline.errors import ConfigError

if TYPE_CHECKING:
    from umt.cache.reader import FeatureCache
    from umt.pipeline.data.visual_stats import StandardizedFeatures, VisualStats

#: What stage-two models are built for: the paper's ResNet-152 7x7x2048 grid.
EXPECTED_MANIFEST = {"backbone": "resnet152"}
#: Manifest keys a reopened run insists on: features must come from the same extraction settings.
PINNED_KEYS = ("backbone", "weights", "preprocessing", "dtype")


def features_path(path: Path | None, data_root: Path, dataset: str) -> Path:
    """``path``, or the dataset's default cache; ConfigError when there is no such file (no h5py needed)."""
    target = Path(path) if path is not None else default_cache_path(data_root, dataset)
    if not target.is_file():
        raise ConfigError(
            f"no image-feature cache at {target}: run `umt extract-images --dataset {dataset}` first, "
            "pass --features FILE, or --no-images to train with every image absent"
        )
    return target


def open_features(path: Path | None, data_root: Path, dataset: str) -> tuple[FeatureCache, dict]:
    """The cache for ``dataset`` (``path`` or the default one) and what the run records of it."""
    from umt.cache.reader import FeatureCache

    target = features_path(path, data_root, dataset)
    cache = FeatureCache(target, expect=EXPECTED_MANIFEST)
    pinned = {k: cache.manifest[k] for k in PINNED_KEYS if k in cache.manifest}
    return cache, {"path": str(target.resolve()), "manifest": pinned}


def open_run_features(
    recorded: dict, override: Path | None, stats: VisualStats | None
) -> FeatureCache | StandardizedFeatures:
    """The cache a reopened run reads: the ``recorded`` one, or ``override`` if it matches the
    run's pinned settings; standardised with the run's ``stats`` when it trained with them."""
    from umt.cache.reader import FeatureCache
    from umt.pipeline.data.visual_stats import StandardizedFeatures

    if override is None and not recorded["path"]:
        raise ConfigError("the model was exported without its image-feature cache: pass --features FILE")
    target = Path(override) if override is not None else Path(recorded["path"])
    if not target.is_file():
        raise ConfigError(f"the run's image-feature cache {target} is gone; pass --features FILE")
    cache = FeatureCache(target, expect=recorded["manifest"])
    return StandardizedFeatures(cache, stats) if stats is not None else cache
