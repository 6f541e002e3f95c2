"""Reader for users' own posts as JSON lines, one post per line::

    {"tokens": ["Great", "to", "see", "Jordan"], "labels": ["O", "O", "O", "B-PER"], "image": "42"}

``tokens`` is required (a non-empty list of non-empty strings). ``labels`` is optional: leave
it out (or null) for posts to be tagged; when present it has one BIO2 label per token.
``image`` is optional: an image id, the name of a file inside the image folder (``42``,
``42.jpg`` or ``2017/42.jpg``; never absolute, never ``..``); leave it out (or null) for a post
without an image. A post may also carry ``id`` and ``text`` (kept for
people, not read). Any other key is an error with a did-you-mean suggestion: a misspelt key
(``image_id``, ``label``) would otherwise be silently ignored and, for ``image``, train a
multimodal model with every image absent. Blank lines are skipped. Every problem is reported
with the file and line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from umt.pipeline.data.images import image_id_problem
from umt.pipeline.data.textfile import read_lines
from umt.pipeline.data.types import Post
from umt.pipeline.errors import DataFormatError, did_you_mean
from umt.pipeline.files import JSONProblem, parse_json
from umt.pipeline.labels import normalize_label

TOKENS, LABELS, IMAGE = "tokens", "labels", "image"
#: Keys a post may carry that the reader does not use.
INFORMATIONAL = ("id", "text")
KNOWN_KEYS = (TOKENS, LABELS, IMAGE, *INFORMATIONAL)


def _unknown_key(key: str) -> str:
    hint = did_you_mean(key, KNOWN_KEYS)
    return (
        f"unknown key '{key}'{hint}; a post has '{TOKENS}', optionally '{LABELS}' and '{IMAGE}', and may carry "
        f"{' and '.join(repr(k) for k in INFORMATIONAL)}. Other layouts: umt data import --help"
    )


def _string_list(value: object, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"'{key}' must be a list of non-empty strings")
    return value


def _post(record: object, origin: str) -> Post:
    """A Post from one decoded line; ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with '{TOKENS}', found {type(record).__name__}")
    unknown = [key for key in record if key not in KNOWN_KEYS]
    if unknown:
        raise ValueError(_unknown_key(unknown[0]))
    if TOKENS not in record:
        raise ValueError(f"missing '{TOKENS}'")
    tokens = _string_list(record[TOKENS], TOKENS)
    if not tokens:
        raise ValueError(f"'{TOKENS}' is empty")
    labels = record.get(LABELS)
    if labels is not None:
        labels = [normalize_label(label) for label in _string_list(labels, LABELS)]
        if len(labels) != len(tokens):
            raise ValueError(f"{len(tokens)} tokens but {len(labels)} labels")
    image = record.get(IMAGE)
    if image is not None and not isinstance(image, str):
        raise ValueError(f"'{IMAGE}' must be a string (an image id: a file name in the image folder) or null")
    if image is not None:
        problem = image_id_problem(image)
        if problem is not None:
            raise ValueError(f"'{IMAGE}' {image!r} {problem}")
    return Post(tokens, labels, image, origin=origin)


def json_lines(path: Path) -> Iterator[tuple[int, object]]:
    """(1-based line number, decoded value) of every non-blank line; DataFormatError at a bad one."""
    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            yield number, parse_json(line)
        except JSONProblem as e:
            where = f" at column {e.column}" if e.column else ""
            raise DataFormatError(path, number, f"invalid JSON{where}: {e.reason}") from None


def read_jsonl(path: str | Path) -> list[Post]:
    """All posts of a JSON-lines file, in file order, labels normalised (``OTHER`` -> ``MISC``)."""
    path = Path(path)
    posts: list[Post] = []
    for number, record in json_lines(path):
        try:
            posts.append(_post(record, f"{path}:{number}"))
        except ValueError as e:
            raise DataFormatError(path, number, str(e)) from None
    if not posts:
        raise DataFormatError(path, 1, "no posts: the file is empty")
    return posts
