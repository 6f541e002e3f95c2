"""Where a dataset's cache lives by default, so that stage one and stage two agree on it."""

from __future__ import annotations

from pathlib import Path

#: ``<data root>/<dataset>_resnet152.h5``, beside the ``<dataset>_images/`` folder it is made from.
CACHE_SUFFIX = "_resnet152.h5"


def default_cache_path(data_root: Path | str, dataset: str) -> Path:
    return Path(data_root) / f"{dataset}{CACHE_SUFFIX}"
