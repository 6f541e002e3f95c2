"""Resolving an image id to a file. Shared by ``umt data stats`` and ``umt extract-images``."""

from __future__ import annotations

from pathlib import Path

#: Tried in this order after the id itself; Twitter ids carry no extension and the files are .jpg.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")


def resolve_image(images_dir: Path | None, image: str) -> Path | None:
    """The file for ``image`` (an id or a path), or None when no such file exists.

    An absolute path, or a path relative to ``images_dir``, is used as is when it exists;
    otherwise ``<images_dir>/<id><ext>`` for each extension in :data:`IMAGE_EXTENSIONS`.
    The file's content decides how it is decoded, not its extension.
    """
    direct = Path(image)
    if direct.is_absolute():
        return direct if direct.is_file() else None
    if images_dir is None:
        return direct if direct.is_file() else None
    candidate = images_dir / image
    if candidate.is_file():
        return candidate
    for ext in IMAGE_EXTENSIONS:
        candidate = images_dir / f"{image}{ext}"
        if candidate.is_file():
            return candidate
    return None
