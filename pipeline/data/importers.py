"""Reading the dataset layouts users already have into umt's own (``umt data import``).

umt's layout is ``<root>/<name>/{train,valid,test}.{txt,jsonl}`` plus ``<root>/<name>_images/``
(see :mod:`umt.pipeline.data.layout`). Two foreign layouts are read:

- ``twitter``: the Twitter-2015/2017 release, a folder with ``train.txt``, ``valid.txt`` (or
  ``dev.txt``) and ``test.txt`` in the Twitter format, and its images in ``<folder>/images``
  or a sibling ``<folder>_images`` (optional). The split files are validated and copied as they
  are; the images are copied.
- ``mner-json``: the JSON-lines layout of RiTUAL-UH/multimodal_NER (the one of
  ``mner-real-sample``): ``texts/<split>/<split>.json`` with ``tokens``, ``label``, ``image_id``
  (and ``id``, ``text``) per line, splits ``train``/``dev``/``test``, and one image folder per
  split, ``images/<split>/<image_id>``, whose file names repeat across splits. Each post becomes a
  umt JSONL line; each image is copied as ``<split folder>-<image_id>`` (``dev-1.jpg``) so no
  two splits collide, and
  the post's ``image`` names that file.

Every problem is reported with the source file and line; nothing is skipped silently.

An import writes only its two target folders, and only files named by validated image ids
(plain file names): it never writes outside them. Before anything is written it refuses a source
that overlaps the target (importing a dataset onto itself would delete it). ``--overwrite``
replaces only a dataset an earlier import made: the import leaves :data:`MARKER` in the dataset
folder, and a folder without it is refused (it may be the original release, or anything else
that happens to have that name).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from umt.cache.durable import atomic_write_bytes
from umt.pipeline.data.images import IMAGE_EXTENSIONS, ImagePathError, image_id_problem, inside, resolve_image
from umt.pipeline.data.jsonl import json_lines
from umt.pipeline.data.layout import IMAGES_SUFFIX, SPLITS
from umt.pipeline.data.twitter import read_twitter
from umt.pipeline.errors import ConfigError, DataFormatError
from umt.pipeline.labels import normalize_label

#: Split names other layouts use for umt's.
SPLIT_ALIASES = {"train": ("train",), "valid": ("valid", "dev", "val"), "test": ("test",)}
#: Written into the dataset folder by every import: what was imported, from where. Its presence
#: is what lets ``--overwrite`` replace the dataset.
MARKER = "import.json"


@dataclass(frozen=True)
class Imported:
    """What an import wrote: posts per split, images copied, image references without a file."""

    folder: Path
    images: Path
    posts: dict[str, int]
    copied: int
    missing: list[str]


def _find_split(folder: Path, split: str, pattern: Callable[[str], Path]) -> Path:
    tried = [pattern(alias) for alias in SPLIT_ALIASES[split]]
    found = [path for path in tried if path.is_file()]
    if not found:
        raise ConfigError(f"no {split} split: looked for {', '.join(str(p) for p in tried)}")
    return found[0]


def _copy(source: Path, target: Path) -> None:
    try:
        shutil.copyfile(source, target, follow_symlinks=True)
    except OSError as e:
        raise ConfigError(f"cannot copy {source} to {target}: {e.strerror}") from None


def _check_apart(sources: tuple[Path | None, ...], targets: tuple[Path, ...]) -> None:
    """Refuse a source folder that is, holds or lies inside a target folder."""
    for source in (s for s in sources if s is not None):
        for target in targets:
            if inside(target, source) or inside(source, target):
                raise ConfigError(
                    f"the source {source} and the target {target} overlap; import into another --data-root or --name"
                )


def _replaceable(folder: Path, images: Path) -> None:
    """Refuse to replace a dataset that no import made (it has no :data:`MARKER`)."""
    for path in (folder, images):
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise ConfigError(f"{path} is not a folder umt data import made; remove it yourself or use another --name")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER).is_file():
        raise ConfigError(
            f"{folder} was not made by umt data import (it has no {MARKER}); --overwrite replaces only an imported "
            "dataset: remove it yourself, or choose another --name"
        )
    if images.is_dir() and any(images.iterdir()) and not (folder / MARKER).is_file():
        raise ConfigError(
            f"{images} was not made by umt data import; remove it yourself, or choose another --name"
        )


def _prepare(sources: tuple[Path | None, ...], root: Path, name: str, overwrite: bool) -> tuple[Path, Path]:
    folder, images = root / name, root / f"{name}{IMAGES_SUFFIX}"
    _check_apart(sources, (folder, images))
    existing = [p for p in (folder, images) if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --name")
    _replaceable(folder, images)
    try:
        for path in existing:
            shutil.rmtree(path)
        folder.mkdir(parents=True)
        images.mkdir(parents=True)
    except OSError as e:
        raise ConfigError(f"cannot create {folder}: {e.strerror}") from None
    return folder, images


def _write_marker(folder: Path, source: Path, fmt: str, result: Imported) -> None:
    record = {"format": fmt, "source": str(source.resolve()), "posts": result.posts, "copied": result.copied,
              "missing": len(result.missing)}
    atomic_write_bytes(folder / MARKER, (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _source_image(folder: Path, image_id: str) -> Path | None:
    """The source's file for ``image_id``; one that links out of the source's image folder is not used."""
    try:
        return resolve_image(folder, image_id)
    except ImagePathError:
        return None


def import_twitter(source: Path, root: Path, name: str, overwrite: bool = False) -> Imported:
    """Validate and copy a Twitter-format dataset folder (see the module docstring)."""
    files = {split: _find_split(source, split, lambda alias: source / f"{alias}.txt") for split in SPLITS}
    posts = {split: read_twitter(path) for split, path in files.items()}  # file:line errors before writing
    candidates = [source / "images", source.parent / f"{source.name}{IMAGES_SUFFIX}"]
    image_dir = next((p for p in candidates if p.is_dir()), None)
    folder, images = _prepare((source, image_dir), root, name, overwrite)
    for split, path in files.items():
        _copy(path, folder / f"{split}.txt")
    copied, missing = 0, []
    ids = sorted({p.image for split_posts in posts.values() for p in split_posts if p.image is not None})
    if image_dir is not None:
        for image_id in ids:  # plain file names: the Twitter reader refuses any other id
            found = _source_image(image_dir, image_id)
            if found is None:
                missing.append(image_id)
                continue
            _copy(found, images / (image_id + (found.suffix if not Path(image_id).suffix else "")))
            copied += 1
    else:
        missing = ids
    result = Imported(folder, images, {s: len(p) for s, p in posts.items()}, copied, missing)
    _write_marker(folder, source, "twitter", result)
    return result


def _mner_record(record: object, folder: str, path: Path, line: int) -> dict:
    """A umt JSONL record; its image is renamed ``<source split folder>-<image_id>``."""
    if not isinstance(record, dict):
        raise DataFormatError(path, line, f"expected a JSON object, found {type(record).__name__}")
    for key in ("tokens", "label"):
        if key not in record:
            raise DataFormatError(path, line, f"missing {key!r} (keys: {', '.join(sorted(record))})")
    tokens, labels = record["tokens"], record["label"]
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
        raise DataFormatError(path, line, "'tokens' must be a non-empty list of non-empty strings")
    if not isinstance(labels, list) or len(labels) != len(tokens):
        found = len(labels) if isinstance(labels, list) else 0
        raise DataFormatError(path, line, f"{len(tokens)} tokens but {found} labels")
    try:
        labels = [normalize_label(str(label)) for label in labels]
    except ValueError as e:
        raise DataFormatError(path, line, str(e)) from None
    image = record.get("image_id")
    if image is not None and not isinstance(image, str):
        raise DataFormatError(path, line, f"'image_id' must be a plain file name, found {image!r}")
    if image is not None:
        problem = image_id_problem(image, folders=False) or ("starts with '.'" if image.startswith(".") else None)
        if problem is not None:
            raise DataFormatError(path, line, f"'image_id' {image!r} {problem}")
    out = {"tokens": tokens, "labels": labels, "image": f"{folder}-{image}" if image else None}
    if "id" in record:
        out["id"] = str(record["id"])
    return out


def import_mner_json(source: Path, root: Path, name: str, overwrite: bool = False) -> Imported:
    """Convert the RiTUAL-UH/multimodal_NER JSON-lines layout (see the module docstring)."""
    files = {
        split: _find_split(source, split, lambda alias: source / "texts" / alias / f"{alias}.json") for split in SPLITS
    }
    converted: dict[str, list[dict]] = {}
    folders: dict[str, Path] = {}
    for split, path in files.items():
        records = [_mner_record(record, path.parent.name, path, number) for number, record in json_lines(path)]
        if not records:
            raise DataFormatError(path, 1, "no posts: the file is empty")
        converted[split] = records
        folders[split] = source / "images" / path.parent.name  # the split's own image folder (dev, not valid)
    folder, images = _prepare((source,), root, name, overwrite)
    copied, missing = 0, []
    for split, records in converted.items():
        lines = []
        for record in records:
            image = record["image"]
            if image is not None:
                original = folders[split] / image.removeprefix(f"{folders[split].name}-")
                usable = original.suffix.lower() in IMAGE_EXTENSIONS + ("",)
                if usable and _source_image(folders[split], original.name) == original:
                    _copy(original, images / image)
                    copied += 1
                else:
                    missing.append(str(original))
            lines.append(json.dumps(record, ensure_ascii=False))
        atomic_write_bytes(folder / f"{split}.jsonl", ("\n".join(lines) + "\n").encode("utf-8"))
    result = Imported(folder, images, {s: len(r) for s, r in converted.items()}, copied, missing)
    _write_marker(folder, source, "mner-json", result)
    return result


IMPORTERS = {"twitter": import_twitter, "mner-json": import_mner_json}
