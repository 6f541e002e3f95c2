"""Finding and opening the image-feature cache that stage two reads (never pixels)."""

from __future__ import annotations

from pathlib import Path

from cache import FeatureCache, default_cache_path
from pipeline.data.visual_stats import StandardizedFeatures, VisualStats
from pipeline.errors import ConfigError
from pipeline.rundir import VISUAL_STATS

#: What stage-two models are built for: the paper's ResNet-152 7x7x2048 grid.
EXPECTED_MANIFEST = {"backbone": "resnet152"}
#: Manifest keys a reopened run insists on: features must come from the same extraction settings.
PINNED_KEYS = ("backbone", "weights", "preprocessing")


def open_features(path: Path | None, data_root: Path, dataset: str) -> tuple[FeatureCache, dict]:
    """The cache for ``dataset`` (``path`` or the default one) and what the run records of it."""
    target = Path(path) if path is not None else default_cache_path(data_root, dataset)
    if not target.is_file():
        raise ConfigError(
            f"no image-feature cache at {target}: run `umt extract-images --dataset {dataset}` first, "
            "pass --features FILE, or --no-images to train with every image absent"
        )
    cache = FeatureCache(target, expect=EXPECTED_MANIFEST)
    pinned = {k: cache.manifest[k] for k in PINNED_KEYS if k in cache.manifest}
    return cache, {"path": str(target.resolve()), "manifest": pinned}


def open_run_features(opened, override: Path | None) -> FeatureCache | StandardizedFeatures | None:
    """The cache a reopened run reads: its own, or ``override`` if it matches the run's settings."""
    if opened.config.get("no_images"):
        return None
    info = opened.config["features"]
    target = Path(override) if override is not None else Path(info["path"])
    if not target.is_file():
        raise ConfigError(f"the run's image-feature cache {target} is gone; pass --features FILE")
    cache = FeatureCache(target, expect=info["manifest"])
    stats_path = opened.path / VISUAL_STATS
    return StandardizedFeatures(cache, VisualStats.load(stats_path)) if stats_path.is_file() else cache
