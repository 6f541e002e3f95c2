"""Finding and opening the image-feature cache that stage two reads (never pixels).

In umt, *features* always means image features: the grids of stage one (ResNet-152's 7x7x2048,
or any registered backbone's, ``umt.pipeline.vision.backbones``; ``features.shape`` says which). A
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

#: Manifest keys a reopened run insists on: features must come from the same extraction settings.
PINNED_KEYS = ("backbone", "layer", "grid", "channels", "weights", "preprocessing", "dtype")


def features_path(path: Path | None, data_root: Path, dataset: str, backbone: str | None = None) -> Path:
    """``path``, or the dataset's default cache of ``backbone`` (None: the paper's, ResNet-152);
    ConfigError when there is no such file (no h5py needed)."""
    from umt.pipeline.vision.backbones import DEFAULT_BACKBONE

    default = default_cache_path(data_root, dataset, backbone or DEFAULT_BACKBONE)
    target = Path(path) if path is not None else default
    if not target.is_file():
        raise ConfigError(
            f"no image-feature cache at {target}: run `umt extract-images --dataset {dataset}"
            + (f" --backbone {backbone}" if backbone else "")
            + "` first, "
            "pass --features FILE, or --no-images to train with every image absent"
        )
    return target


def open_features(
    path: Path | None, data_root: Path, dataset: str, backbone: str | None = None
) -> tuple[FeatureCache, dict]:
    """The cache for ``dataset`` (``path`` or the default one of ``backbone``) and what the run
    records of it; with ``backbone`` named, a cache of another backbone is refused."""
    from umt.cache.reader import FeatureCache

    target = features_path(path, data_root, dataset, backbone)
    cache = FeatureCache(target)
    check_backbone(cache, backbone)
    pinned = {k: cache.manifest[k] for k in PINNED_KEYS if k in cache.manifest}
    return cache, {"path": str(target.resolve()), "manifest": pinned}


def check_backbone(cache: FeatureCache, expected: str | None = None) -> None:
    """A cache is read only when its manifest names a registered backbone (``expected``, when
    given) with the grid shape and layer that backbone gives (``recorded_backbone``)."""
    from umt.pipeline.vision.backbones import recorded_backbone

    name = recorded_backbone(cache.manifest, str(cache.path)).name
    if expected is not None and name != expected:
        raise ConfigError(f"{cache.path} holds {name} features, not {expected}'s (--backbone {expected})")


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
