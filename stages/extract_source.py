"""Which images ``umt extract-images`` reads, from where, and into which file.

Ids come from a dataset's split files (``--dataset``), from an id list (``--ids-from``) or from
the image files in a folder (``--images`` alone; the id is then the file name). Either way they
are made distinct and sorted, so that the plan, and with it the cache, does not depend on the
order files were listed or posts were read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cache.paths import default_cache_path
from pipeline.data import datasets
from pipeline.data.images import IMAGE_EXTENSIONS
from pipeline.errors import ConfigError
from stages.extract_config import ExtractConfig


@dataclass(frozen=True)
class Source:
    """The images to extract: ``ids`` (distinct, sorted) found in ``images_dir``; ``record`` for the manifest."""

    ids: list[str]
    images_dir: Path
    out: Path
    record: dict[str, Any]


def _ids_from_dataset(root: Path, name: str) -> list[str]:
    splits = datasets.load_dataset(root, name)
    return [post.image for posts in splits.values() for post in posts if post.image is not None]


def _ids_from_file(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"--ids-from {path}: {e}") from e
    return [line.strip() for line in lines if line.strip()]


def _ids_from_folder(folder: Path) -> list[str]:
    """File names of the folder's image files (by extension); a file's content is judged later.

    A broken symbolic link is listed too: it names an image the user meant to have, and the run
    reports it as missing instead of leaving it out unnoticed.
    """
    return [
        p.name
        for p in folder.iterdir()
        if (p.is_file() or p.is_symlink()) and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    ]


def resolve_source(config: ExtractConfig) -> Source:
    """Which ids, from which folder, into which file; every user mistake is a ConfigError."""
    if config.dataset and config.ids_from:
        raise ConfigError("--ids-from cannot be combined with --dataset (the dataset's files list its ids)")
    if config.dataset:
        root = Path(config.data_root) if config.data_root else datasets.default_data_root()
        images = Path(config.images) if config.images else datasets.images_dir(root, config.dataset)
        out = Path(config.out) if config.out else default_cache_path(root, config.dataset)
        record = {"dataset": config.dataset, "images": str(images.resolve())}
    elif config.images:
        if config.out is None:
            raise ConfigError("--out FILE is required with --images (or use --dataset NAME)")
        images, out = Path(config.images), Path(config.out)
        record = {"dataset": None, "images": str(images.resolve())}
    else:
        raise ConfigError("say which images to extract: --dataset NAME, or --images DIR --out FILE")
    if not images.is_dir():
        raise ConfigError(f"image folder {images} does not exist (pass --images DIR)")
    if config.dataset:
        ids = _ids_from_dataset(root, config.dataset)
    elif config.ids_from:
        ids = _ids_from_file(Path(config.ids_from))
    else:
        ids = _ids_from_folder(images)
    if not ids:
        raise ConfigError(f"no image ids to extract (image folder {images})")
    if config.shard is not None:
        out = config.shard.path_for(out)
    return Source(sorted(set(ids)), images, out, record)
