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

from umt.cache.paths import Shard, default_cache_path
from umt.pipeline.data import layout
from umt.pipeline.data.images import IMAGE_EXTENSIONS, image_id_problem
from umt.pipeline.data.textfile import read_lines
from umt.pipeline.errors import ConfigError, DataFormatError


@dataclass(frozen=True)
class Source:
    """The images to extract: ``ids`` (distinct, sorted) found in ``images_dir``; ``record`` for the manifest."""

    ids: list[str]
    images_dir: Path
    out: Path
    record: dict[str, Any]


def _ids_from_dataset(root: Path, name: str) -> list[str]:
    splits = layout.load_dataset(root, name)
    return [post.image for posts in splits.values() for post in posts if post.image is not None]


def _ids_from_file(path: Path) -> list[str]:
    """The ids listed in ``path``, one per line; a line that is not an image id is a file:line error."""
    ids = []
    for number, line in enumerate(read_lines(path), start=1):
        image = line.strip()
        if not image:
            continue
        problem = image_id_problem(image)
        if problem is not None:
            raise DataFormatError(path, number, f"image id {image!r} {problem}")
        ids.append(image)
    return ids


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


def resolve_source(
    *,
    dataset: str | None = None,
    data_root: Path | None = None,
    images: Path | None = None,
    ids_from: Path | None = None,
    out: Path | None = None,
    shard: Shard | None = None,
    backbone: str,
) -> Source:
    """Which ids, from which folder, into which file (the options of ``umt extract-images``);
    every user mistake is a ConfigError."""
    if dataset and ids_from:
        raise ConfigError("--ids-from cannot be combined with --dataset (the dataset's files list its ids)")
    if dataset:
        root = Path(data_root) if data_root else layout.default_data_root()
        folder = Path(images) if images else layout.images_dir(root, dataset)
        target = Path(out) if out else default_cache_path(root, dataset, backbone)
        record = {"dataset": dataset, "images": str(folder.resolve())}
    elif images:
        if out is None:
            raise ConfigError("--out FILE is required with --images (or use --dataset NAME)")
        folder, target = Path(images), Path(out)
        record = {"dataset": None, "images": str(folder.resolve())}
    else:
        raise ConfigError("say which images to extract: --dataset NAME, or --images DIR --out FILE")
    if not folder.is_dir():
        raise ConfigError(f"image folder {folder} does not exist (pass --images DIR)")
    if dataset:
        ids = _ids_from_dataset(root, dataset)
    elif ids_from:
        ids = _ids_from_file(Path(ids_from))
    else:
        ids = _ids_from_folder(folder)
    if not ids:
        raise ConfigError(f"no image ids to extract (image folder {folder})")
    if shard is not None:
        target = shard.path_for(target)
    return Source(sorted(set(ids)), folder, target, record)
