"""Image ids and the files they name. Shared by the readers, ``umt data stats``, ``umt data import``,
``umt extract-images`` and ``umt predict``, so every one of them finds (and refuses) the same files.

An image id comes from a data file, which may come from anyone: it is a *name* inside the image
folder, never a way out of it. :func:`image_id_problem` says why a string cannot be an id: an
absolute path, a ``..`` component, a backslash or a control character (and, where ids must be
plain file names, a ``/``). :func:`resolve_image` finds the id's file inside the folder and
requires the file, once symbolic links are resolved, to lie inside the folder too: a link inside
the image folder that points elsewhere is refused (link the folder itself instead).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

#: Tried in this order after the id itself; Twitter ids carry no extension and the files are .jpg.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
#: Longer than any file name a file system takes (255 bytes) times a few folders.
MAX_ID_LENGTH = 1024


class ImagePathError(ValueError):
    """An image id that is not a name inside its folder, or whose file links out of the folder."""


def image_id_problem(image: str, *, folders: bool = True) -> str | None:
    """Why ``image`` cannot be an image id (a relative path inside the image folder; with
    ``folders=False`` a plain file name), or None when it can."""
    if not image or not image.strip():
        return "is empty"
    if len(image) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    if any(not ch.isprintable() for ch in image):
        return "contains control characters"
    if "\\" in image:
        return "contains a backslash (image ids use '/' between folders)"
    if image.startswith("/"):
        return "is an absolute path (an id names a file inside the image folder)"
    if ".." in PurePosixPath(image).parts:
        return "contains '..' (an id names a file inside the image folder)"
    if not folders and "/" in image:
        return "contains '/' (an id here is a plain file name)"
    return None


def check_image_id(image: str, *, folders: bool = True) -> str:
    """``image`` when it is a valid id, else :class:`ImagePathError` saying why."""
    problem = image_id_problem(image, folders=folders)
    if problem is not None:
        raise ImagePathError(f"image id {image!r} {problem}")
    return image


def inside(folder: Path, path: Path) -> bool:
    """Whether ``path``, its links resolved, lies inside ``folder`` (its links resolved too)."""
    return path.resolve().is_relative_to(folder.resolve())


def resolve_image(images_dir: Path, image: str) -> Path | None:
    """The file inside ``images_dir`` for the id ``image``, or None when it has none.

    ``<images_dir>/<id>`` is tried, then ``<images_dir>/<id><ext>`` for each extension in
    :data:`IMAGE_EXTENSIONS`; only regular files count (a FIFO or a device named like an image is
    not one). The file's content decides how it is decoded, not its extension.
    :class:`ImagePathError` when ``image`` is not an id or its file links out of the folder.
    """
    check_image_id(image)
    for candidate in candidate_files(images_dir, image):
        if is_file(candidate):
            if not inside(images_dir, candidate):
                raise ImagePathError(
                    f"image {image!r}: {candidate} is a link to a file outside the image folder {images_dir}"
                )
            return candidate
    return None


def candidate_files(folder: Path, image: str) -> Iterator[Path]:
    """Where the file for ``image`` may be, in the order tried: as named, then with each extension."""
    yield folder / image
    for ext in IMAGE_EXTENSIONS:
        yield folder / f"{image}{ext}"


def is_file(path: Path) -> bool:
    """``path.is_file()``, False where the file system refuses the name (too long, unreadable folder)."""
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system, a folder that cannot be read
        return False
