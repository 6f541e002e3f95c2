"""Posts to tag (``umt predict``): JSON lines or CSV, raw text or tokens, an optional image.

JSON lines, one post per line (blank lines skipped)::

    {"text": "Kevin Durant enters Oracle Arena", "image": "photos/42.jpg", "id": "42"}
    {"tokens": ["Kevin", "Durant", "enters"], "image": "42"}

- ``text`` is split by the tweet tokenizer (``pipeline.text.tweets``) into tokens with their
  character offsets; ``tokens`` are taken as they are, and the post's text is then the tokens
  joined by single spaces (the offsets index that string). A line may carry both: the tokens
  must then be found in order in the text, and their offsets come from there.
- ``image`` (optional): a path, or an id resolved in ``--images DIR``; ``id`` (optional) is
  copied to the output. Other keys are kept for the user and ignored.

CSV: a header row with a ``text`` column and optionally ``image`` and ``id``.

A folder of images with captions: each image file (``.jpg``, ``.png``, ...) with its text in a
``.txt`` file of the same name beside it (``photo.jpg`` + ``photo.txt``); posts in file-name
order, "line" ``n`` being the ``n``-th image, and the id the image's file name.

A line that cannot be used (invalid JSON, no text or tokens, a field of the wrong type) is a
:class:`BadLine` with its line number; reading goes on with the next line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from umt.pipeline.data.images import IMAGE_EXTENSIONS
from umt.pipeline.text.tweets import locate, tokenize

FORMATS = ("jsonl", "csv", "folder")


@dataclass
class NewPost:
    line: int  # 1-based line (JSONL) or row (CSV, the header is row 1) in the input
    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]]  # character span of each token in ``text``
    image: str | None = None
    id: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class BadLine:
    line: int
    reason: str


def from_text(text: str, style: str, **fields) -> NewPost:
    tokens = tokenize(text, style)
    return NewPost(text=text, tokens=[t.text for t in tokens], offsets=[(t.start, t.end) for t in tokens], **fields)


def from_tokens(tokens: list[str], text: str | None = None, **fields) -> NewPost:
    """A post of given tokens; offsets into ``text`` when given, else into the tokens joined by spaces."""
    if text is not None:
        offsets = locate(text, tokens)
        if offsets is None:
            raise ValueError("the tokens are not found in order in 'text'")
        return NewPost(text=text, tokens=list(tokens), offsets=offsets, **fields)
    offsets, cursor = [], 0
    for token in tokens:
        offsets.append((cursor, cursor + len(token)))
        cursor += len(token) + 1
    return NewPost(text=" ".join(tokens), tokens=list(tokens), offsets=offsets, **fields)


def _optional_string(record: dict, key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and key == "id":
        return str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def parse_record(record: object, line: int, style: str) -> NewPost:
    """A post from one decoded record; ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with 'text' or 'tokens', found {type(record).__name__}")
    fields = {"line": line, "image": _optional_string(record, "image"), "id": _optional_string(record, "id")}
    fields["extra"] = {k: v for k, v in record.items() if k not in ("text", "tokens", "image", "id", "labels")}
    text = record.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError("'text' must be a string")
    tokens = record.get("tokens")
    if tokens is not None:
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t and not t.isspace() for t in tokens):
            raise ValueError("'tokens' must be a list of non-empty strings")
        return from_tokens(tokens, text, **fields)
    if text is None:
        raise ValueError("missing 'text' (or 'tokens')")
    return from_text(text, style, **fields)


def read_new_posts(lines: Iterable[str], fmt: str, style: str) -> Iterator[NewPost | BadLine]:
    """Posts (or bad lines) of an input in ``fmt``, in input order, read lazily."""
    if fmt == "csv":
        yield from _read_csv(lines, style)
        return
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as e:
            yield BadLine(number, f"not valid JSON ({e.msg}, column {e.colno})")
            continue
        try:
            yield parse_record(record, number, style)
        except ValueError as e:
            yield BadLine(number, str(e))


def read_folder(folder: Path, style: str) -> Iterator[NewPost | BadLine]:
    """Posts of a folder of images with ``<name>.txt`` captions beside them."""
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    for number, image in enumerate(images, start=1):
        caption = image.with_suffix(".txt")
        try:
            text = caption.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            yield BadLine(number, f"{image.name}: no caption file {caption.name} beside it")
            continue
        except (OSError, UnicodeDecodeError) as e:
            yield BadLine(number, f"{caption.name}: cannot be read as UTF-8 text ({e})")
            continue
        yield from_text(text, style, line=number, image=str(image), id=image.name)


def _read_csv(lines: Iterable[str], style: str) -> Iterator[NewPost | BadLine]:
    reader = csv.DictReader(io.StringIO("".join(lines)) if not isinstance(lines, io.TextIOBase) else lines)
    if reader.fieldnames is None or "text" not in reader.fieldnames:
        yield BadLine(1, f"the CSV header has no 'text' column (found {reader.fieldnames})")
        return
    for row in reader:
        number = reader.line_num
        record = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        record.setdefault("text", "")
        try:
            yield parse_record(record, number, style)
        except ValueError as e:
            yield BadLine(number, str(e))
