"""Where datasets live and how a split is found.

Layout under a data root (default ``./data``, or ``$UMT_DATA_ROOT``)::

    <root>/<name>/train.txt, valid.txt, test.txt     Twitter format (or .jsonl: JSON lines)
    <root>/<name>_images/<image id>.jpg               the posts' images

The reader is chosen by the file's extension: ``.jsonl``/``.json`` are JSON lines, anything
else is the Twitter format.
"""

from __future__ import annotations

import os
from pathlib import Path

from umt.pipeline.data.jsonl import read_jsonl
from umt.pipeline.data.twitter import read_twitter
from umt.pipeline.data.types import Post
from umt.pipeline.errors import UmtError, did_you_mean

SPLITS = ("train", "valid", "test")
DATA_ROOT_ENV = "UMT_DATA_ROOT"
DEFAULT_DATA_ROOT = "data"
IMAGES_SUFFIX = "_images"
JSONL_SUFFIXES = (".jsonl", ".json")
#: Split file names tried in this order.
SPLIT_SUFFIXES = (".txt", ".jsonl")


def default_data_root() -> Path:
    """``$UMT_DATA_ROOT`` when set, else ``./data``."""
    return Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)


def dataset_dir(root: Path, name: str) -> Path:
    return Path(root) / name


def images_dir(root: Path, name: str) -> Path:
    return Path(root) / f"{name}{IMAGES_SUFFIX}"


def read_posts(path: Path) -> list[Post]:
    """The posts of one file, read by the format its extension names."""
    path = Path(path)
    if path.suffix.lower() in JSONL_SUFFIXES:
        return read_jsonl(path)
    return read_twitter(path)


def split_path(root: Path, name: str, split: str) -> Path:
    """The file holding ``split`` of dataset ``name``; UmtError naming what was looked for."""
    folder = dataset_dir(root, name)
    if not folder.is_dir():
        found = datasets_in(root)
        listing = f"datasets there: {', '.join(found)}" if found else "no dataset is there"
        raise UmtError(
            f"dataset folder {folder} does not exist{did_you_mean(name, found)} (data root {root}: {listing}; "
            f"pass --data-root or set {DATA_ROOT_ENV})"
        )
    candidates = [folder / f"{split}{suffix}" for suffix in SPLIT_SUFFIXES]
    found = [path for path in candidates if path.is_file()]
    if not found:
        looked = ", ".join(str(path) for path in candidates)
        raise UmtError(f"no {split} split for dataset {name!r}: looked for {looked}")
    if len(found) > 1:
        raise UmtError(f"ambiguous {split} split for dataset {name!r}: both {found[0]} and {found[1]} exist")
    return found[0]


def datasets_in(root: Path) -> list[str]:
    """The names of the folders under ``root`` that hold a train split (what ``--dataset`` accepts)."""
    try:
        folders = sorted(p for p in Path(root).iterdir() if p.is_dir())
    except OSError:
        return []
    return [p.name for p in folders if any((p / f"train{suffix}").is_file() for suffix in SPLIT_SUFFIXES)]


def load_split(root: Path, name: str, split: str) -> list[Post]:
    return read_posts(split_path(root, name, split))


def load_dataset(root: Path, name: str) -> dict[str, list[Post]]:
    """Every split of :data:`SPLITS`, each required."""
    return {split: load_split(root, name, split) for split in SPLITS}


def require_labels(posts: list[Post], purpose: str) -> None:
    """UmtError at the first post without labels (its ``file:line``), saying what needed them."""
    unlabelled = [post for post in posts if post.labels is None]
    if unlabelled:
        raise UmtError(
            f"{unlabelled[0].origin}: post has no labels; {purpose} needs labelled data "
            f"({len(unlabelled)} unlabelled post(s) in this file)"
        )
