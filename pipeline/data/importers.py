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
that overlaps the target (importing a dataset onto itself would delete it). Every import first
leaves :data:`MARKER` in the dataset folder, listing every file it is about to write there and in
the image folder. ``--overwrite`` removes exactly those files, by name, and nothing else: a folder
without a marker (the original release, or anything else that happens to have that name), or
holding a file the marker does not list, is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from umt.cache.durable import atomic_write_bytes, remove_owned
from umt.pipeline.data.images import IMAGE_EXTENSIONS, ImagePathError, image_id_problem, inside, resolve_image
from umt.pipeline.data.jsonl import json_lines
from umt.pipeline.data.layout import IMAGES_SUFFIX, SPLITS
from umt.pipeline.data.twitter import read_twitter
from umt.pipeline.errors import ConfigError, DataFormatError
from umt.pipeline.files import read_json_file
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


#: The file each format reads for a split, given the folder and one of the split's aliases.
_SPLIT_FILES: dict[str, Callable[[Path, str], Path]] = {
    "twitter": lambda folder, alias: folder / f"{alias}.txt",
    "mner-json": lambda folder, alias: folder / "texts" / alias / f"{alias}.json",
}


def _holds_splits(folder: Path, fmt: str) -> bool:
    """Whether ``folder`` holds a file of every split in the layout of ``fmt``."""
    pattern = _SPLIT_FILES[fmt]
    return all(any(pattern(folder, alias).is_file() for alias in SPLIT_ALIASES[split]) for split in SPLITS)


def _check_layout(source: Path, fmt: str) -> None:
    """Refuse, in one line, a folder that is not a dataset of ``fmt`` but is one of the other layout
    (the error names ``--format``), or holds several of ``fmt``: a release that bundles its datasets
    (``mner-real-sample/twitter_2015``, ``.../twitter_2017``) is imported one sub-folder at a time,
    and the error names the sub-folders that can be. Any other missing split is left to
    :func:`_find_split`, which names the files it looked for."""
    if _holds_splits(source, fmt):
        return
    other = next((f for f in _SPLIT_FILES if f != fmt and _holds_splits(source, f)), None)
    if other is not None:
        raise ConfigError(f"{source} is a dataset in the {other} layout, not {fmt}: pass --format {other}")
    try:
        subsets = sorted(p.name for p in source.iterdir() if p.is_dir() and _holds_splits(p, fmt))
    except OSError:
        subsets = []
    if not subsets:
        return
    if fmt == "mner-json":
        lacks = (
            "no texts/ folder" if not (source / "texts").is_dir() else "no texts/<split>/<split>.json of every split"
        )
    else:
        lacks = "no train.txt, valid.txt (or dev.txt) and test.txt"
    if len(subsets) == 1:
        sets = f"the importable set {subsets[0]}: import it"
    else:
        sets = f"the importable sets {', '.join(subsets)}: import one of them"
    raise ConfigError(
        f"{source} holds {lacks}; it holds {sets} (umt data import {source / subsets[0]} --format {fmt} --name NAME)"
    )


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


def _written_before(folder: Path, images: Path) -> tuple[set[str], set[str]]:
    """The names an earlier import wrote into the dataset folder and the image folder, read from its
    :data:`MARKER`; a ConfigError when the folders hold anything else (or were not made by one)."""
    for path in (folder, images):
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            raise ConfigError(f"{path} is not a folder umt data import made; remove it yourself or use another --name")
    marker = read_json_file(folder / MARKER) if (folder / MARKER).is_file() else None
    try:
        dataset, copied = ({str(n) for n in marker["files"][key]} for key in ("dataset", "images"))
    except (TypeError, KeyError):
        dataset = copied = None
    held = {f: _names(f) for f in (folder, images) if f.is_dir()}
    if dataset is None:
        if any(held.values()):
            raise ConfigError(
                f"{folder} was not made by umt data import (it has no readable {MARKER}); --overwrite replaces only "
                "an imported dataset: remove it yourself, or choose another --name"
            )
        return set(), set()
    owned = {folder: {*dataset, MARKER}, images: copied}
    unknown = [
        f"{f.name}/{n}" for f, names in held.items() for n, regular in names.items() if not regular or n not in owned[f]
    ]
    if unknown:
        raise ConfigError(
            f"{folder} and {images} hold files the import did not write ({', '.join(sorted(unknown)[:3])}); "
            "remove them yourself, or choose another --name"
        )
    return owned[folder], copied


def _names(folder: Path) -> dict[str, bool]:
    """Each name in ``folder`` and whether it is a regular file (not a link, not a folder)."""
    with os.scandir(folder) as entries:
        return {e.name: e.is_file(follow_symlinks=False) for e in entries}


def _prepare(sources: tuple[Path | None, ...], root: Path, name: str, overwrite: bool) -> tuple[Path, Path]:
    """The dataset and image folders, empty: with ``overwrite``, an earlier import's files removed by name."""
    folder, images = root / name, root / f"{name}{IMAGES_SUFFIX}"
    _check_apart(sources, (folder, images))
    existing = [p for p in (folder, images) if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise ConfigError(f"{existing[0]} already exists; pass --overwrite to replace it, or choose another --name")
    dataset, copied = _written_before(folder, images)
    try:
        for path, owned in ((images, copied), (folder, dataset)):
            if path.is_dir():
                remove_owned(path, owned.__contains__)
        folder.mkdir(parents=True, exist_ok=True)
        images.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {folder}: {e.strerror}") from None
    return folder, images


def _write(folder: Path, images: Path, splits: dict[str, Path | bytes], copies: dict[str, Path], record: dict) -> None:
    """The split files (copied, or written from bytes) and the image copies, after :data:`MARKER`
    listing all of them, so that even an import killed half-way is replaced by the next one."""
    files = {"dataset": sorted(splits), "images": sorted(copies)}
    atomic_write_bytes(folder / MARKER, (json.dumps({**record, "files": files}, indent=1) + "\n").encode("utf-8"))
    for target, content in splits.items():
        if isinstance(content, bytes):
            atomic_write_bytes(folder / target, content)
        else:
            _copy(content, folder / target)
    for target, original in copies.items():
        _copy(original, images / target)


def _record(fmt: str, source: Path, posts: dict[str, int], copies: dict, missing: list) -> dict:
    """What :data:`MARKER` says of an import besides the files it lists."""
    return {
        "format": fmt,
        "source": str(source.resolve()),
        "posts": posts,
        "copied": len(copies),
        "missing": len(missing),
    }


def _source_image(folder: Path, image_id: str) -> Path | None:
    """The source's file for ``image_id``; one that links out of the source's image folder is not used."""
    try:
        return resolve_image(folder, image_id)
    except ImagePathError:
        return None


def import_twitter(source: Path, root: Path, name: str, overwrite: bool = False) -> Imported:
    """Validate and copy a Twitter-format dataset folder (see the module docstring)."""
    _check_layout(source, "twitter")
    files = {split: _find_split(source, split, lambda a: _SPLIT_FILES["twitter"](source, a)) for split in SPLITS}
    posts = {split: read_twitter(path) for split, path in files.items()}  # file:line errors before writing
    candidates = [source / "images", source.parent / f"{source.name}{IMAGES_SUFFIX}"]
    image_dir = next((p for p in candidates if p.is_dir()), None)
    ids = sorted({p.image for split_posts in posts.values() for p in split_posts if p.image is not None})
    copies, missing = {}, []
    for image_id in ids:  # plain file names: the Twitter reader refuses any other id
        found = _source_image(image_dir, image_id) if image_dir is not None else None
        if found is None:
            missing.append(image_id)
        else:
            copies[image_id + (found.suffix if not Path(image_id).suffix else "")] = found
    folder, images = _prepare((source, image_dir), root, name, overwrite)
    counts = {split: len(p) for split, p in posts.items()}
    splits = {f"{split}.txt": path for split, path in files.items()}
    _write(folder, images, splits, copies, _record("twitter", source, counts, copies, missing))
    return Imported(folder, images, counts, len(copies), missing)


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
    _check_layout(source, "mner-json")
    files = {split: _find_split(source, split, lambda a: _SPLIT_FILES["mner-json"](source, a)) for split in SPLITS}
    converted: dict[str, list[dict]] = {}
    folders: dict[str, Path] = {}
    for split, path in files.items():
        records = [_mner_record(record, path.parent.name, path, number) for number, record in json_lines(path)]
        if not records:
            raise DataFormatError(path, 1, "no posts: the file is empty")
        converted[split] = records
        folders[split] = source / "images" / path.parent.name  # the split's own image folder (dev, not valid)
    copies, missing, splits = {}, [], {}
    for split, records in converted.items():
        for record in records:
            image = record["image"]
            if image is not None:
                original = folders[split] / image.removeprefix(f"{folders[split].name}-")
                usable = original.suffix.lower() in IMAGE_EXTENSIONS + ("",)
                if usable and _source_image(folders[split], original.name) == original:
                    copies[image] = original
                else:
                    missing.append(str(original))
        lines = [json.dumps(record, ensure_ascii=False) for record in records]
        splits[f"{split}.jsonl"] = ("\n".join(lines) + "\n").encode("utf-8")
    folder, images = _prepare((source,), root, name, overwrite)
    counts = {split: len(r) for split, r in converted.items()}
    _write(folder, images, splits, copies, _record("mner-json", source, counts, copies, missing))
    return Imported(folder, images, counts, len(copies), missing)


IMPORTERS = {"twitter": import_twitter, "mner-json": import_mner_json}
