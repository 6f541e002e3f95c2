"""Posts to tag (``umt predict``): JSON lines or CSV, raw text or tokens, an optional image.

JSON lines, one post per line (blank lines skipped)::

    {"text": "Kevin Durant enters Oracle Arena", "image": "photos/42.jpg", "id": "42"}
    {"tokens": ["Kevin", "Durant", "enters"], "image": "42"}

- ``text`` is split by the tweet tokenizer (``pipeline.text.tweets``) into tokens with their
  character offsets; ``tokens`` are taken as they are, and the post's text is then the tokens
  joined by single spaces (the offsets index that string). A line may carry both: the tokens
  must then be found in order in the text, and their offsets come from there.
- ``image`` (optional): an id or a relative path, found in ``--images DIR`` or beside the input
  (``umt.pipeline.inference.posts`` resolves it); ``id`` (optional) is copied to the output;
  ``labels`` (a training file's gold tags) is allowed and ignored. Any other key is a bad line
  with a did-you-mean, as in the training reader: a misspelt ``image`` would otherwise tag the
  post as text-only without a word.

CSV: a header row with a ``text`` column and optionally ``image`` and ``id``; any other column is
refused at the header (with a did-you-mean), a row with more fields than the header is a bad row.

A folder of images with captions: each image file (``.jpg``, ``.png``, ...) with its text in a
``.txt`` file of the same name beside it (``photo.jpg`` + ``photo.txt``); posts in file-name
order, "line" ``n`` being the ``n``-th image, and the id and ``image`` the image's file name.

The input is untrusted and read with bounded memory: :class:`InputLines` reads it as bytes, a
line at a time, refusing a line longer than :data:`MAX_LINE_BYTES` without holding it, and keeps
bytes that are not UTF-8 (as lone surrogates) so that their line is reported instead of the
whole input stopping. A line that cannot be used (not UTF-8, invalid JSON, JSON nested deeper
than Python can parse, no text or tokens, a field of the wrong type, an unknown key) is a
:class:`BadLine` with its line number; reading goes on with the next line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from umt.pipeline.data.images import IMAGE_EXTENSIONS, inside
from umt.pipeline.errors import did_you_mean
from umt.pipeline.files import JSONProblem, parse_json
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


TEXT, TOKENS, IMAGE, ID, LABELS = "text", "tokens", "image", "id", "labels"
#: Keys a post to tag may carry; ``labels`` (gold tags of a training file) is accepted and ignored.
KNOWN_KEYS = (TEXT, TOKENS, IMAGE, ID, LABELS)
#: The columns a CSV input may have.
CSV_COLUMNS = (TEXT, IMAGE, ID)
#: Far longer than any post (a tweet is at most a few KB as JSON); a longer line is refused unread.
MAX_LINE_BYTES = 1 << 20
UTF8_BOM = b"\xef\xbb\xbf"
#: Lone surrogates: undecodable bytes kept by errors="surrogateescape", or what a JSON escape can make.
_SURROGATE = re.compile("[\ud800-\udfff]")


class InputLines:
    """The lines of a binary input as text (each with its line end), in constant memory.

    UTF-8, a leading byte-order mark dropped. A line with bytes that are not UTF-8 is decoded
    with their bytes kept as lone surrogates (``surrogateescape``) and its number put in
    :attr:`undecodable` with the reason; a line longer than ``limit`` bytes is skipped to its end
    without being held, its number put in :attr:`too_long` and an empty line given in its place.
    """

    def __init__(self, stream: BinaryIO, limit: int = MAX_LINE_BYTES):
        self.stream, self.limit = stream, limit
        self.too_long: set[int] = set()
        self.undecodable: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        number = 0
        while True:
            raw = self.stream.readline(self.limit + 1)
            if not raw:
                return
            number += 1
            if number == 1:
                raw = raw.removeprefix(UTF8_BOM)
            if len(raw) > self.limit and not raw.endswith(b"\n"):
                while (rest := self.stream.readline(self.limit)) and not rest.endswith(b"\n"):
                    pass
                self.too_long.add(number)
                yield "\n"
                continue
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                where = f"byte {raw[e.start]:#04x} at byte {e.start + 1}"
                self.undecodable[number] = f"not UTF-8 text ({e.reason}: {where})"
                yield raw.decode("utf-8", errors="surrogateescape")

    def problem(self, lines: range) -> str | None:
        """Why one of ``lines`` (line numbers) cannot be used, or None."""
        for number in lines:
            if number in self.too_long:
                return f"longer than {self.limit:,} bytes: not read"
            if number in self.undecodable:
                return self.undecodable[number]
        return None


def lone_surrogate(text: str) -> str | None:
    """Why ``text`` cannot be written out as UTF-8 (a lone UTF-16 surrogate, which a JSON escape
    such as ``\\udc80`` can make), or None."""
    found = _SURROGATE.search(text)
    return None if found is None else f"holds a lone UTF-16 surrogate (\\u{ord(found.group()):04x}), which is not text"


def unknown_key(key: str, known: tuple[str, ...] = KNOWN_KEYS, what: str = "key") -> str:
    """The message for an unknown key or column, with a did-you-mean when one is close."""
    hint = did_you_mean(key, known)
    return f"unknown {what} {key!r}{hint}; a post has '{TEXT}' or '{TOKENS}', optionally '{IMAGE}' and '{ID}'" + (
        f" (and '{LABELS}', ignored)" if LABELS in known else ""
    )


def _optional_string(record: dict, key: str) -> str | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and key == ID:
        return str(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"'{key}' must be a non-empty string")
    return value


def _check_text(*values: str | None) -> None:
    for value in values:
        problem = None if value is None else lone_surrogate(value)
        if problem is not None:
            raise ValueError(problem)


def parse_record(record: object, line: int, style: str) -> NewPost:
    """A post from one decoded record; ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object with '{TEXT}' or '{TOKENS}', found {type(record).__name__}")
    unknown = [key for key in record if key not in KNOWN_KEYS]
    if unknown:
        raise ValueError(unknown_key(unknown[0]))
    fields = {"line": line, "image": _optional_string(record, IMAGE), "id": _optional_string(record, ID)}
    text = record.get(TEXT)
    if text is not None and not isinstance(text, str):
        raise ValueError(f"'{TEXT}' must be a string")
    tokens = record.get(TOKENS)
    _check_text(text, fields["image"], fields["id"], *(tokens if isinstance(tokens, list) else []))
    if tokens is not None:
        if not isinstance(tokens, list) or not all(isinstance(t, str) and t and not t.isspace() for t in tokens):
            raise ValueError(f"'{TOKENS}' must be a list of non-empty strings")
        return from_tokens(tokens, text, **fields)
    if text is None:
        raise ValueError(f"missing '{TEXT}' (or '{TOKENS}')")
    return from_text(text, style, **fields)


def _json_line(raw: str, number: int, style: str) -> NewPost | BadLine:
    try:
        record = parse_json(raw)
    except JSONProblem as e:
        return BadLine(number, f"not valid JSON ({e.reason}{f', column {e.column}' if e.column else ''})")
    try:
        return parse_record(record, number, style)
    except ValueError as e:
        return BadLine(number, str(e))


def read_new_posts(lines: Iterable[str], fmt: str, style: str) -> Iterator[NewPost | BadLine]:
    """Posts (or bad lines) of an input in ``fmt``, in input order, read lazily. ``lines`` is an
    :class:`InputLines` (or any iterable of text lines)."""
    checked = lines if isinstance(lines, InputLines) else None
    if fmt == "csv":
        yield from _read_csv(lines, style, checked)
        return
    for number, raw in enumerate(lines, start=1):
        problem = checked.problem(range(number, number + 1)) if checked is not None else None
        if problem is not None:
            yield BadLine(number, problem)
        elif raw.strip():
            yield _json_line(raw, number, style)


def read_folder(folder: Path, style: str) -> Iterator[NewPost | BadLine]:
    """Posts of a folder of images with ``<name>.txt`` captions beside them; ``image`` is the file's
    name (resolved in the folder)."""
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    for number, image in enumerate(images, start=1):
        caption = image.with_suffix(".txt")
        if caption.exists() and not inside(folder, caption):
            yield BadLine(number, f"{caption.name}: a link to a file outside {folder}")
            continue
        try:
            with caption.open("rb") as handle:
                raw = handle.read(MAX_LINE_BYTES + 1)
        except FileNotFoundError:
            yield BadLine(number, f"{image.name}: no caption file {caption.name} beside it")
            continue
        except OSError as e:
            yield BadLine(number, f"{caption.name}: cannot be read ({e.strerror})")
            continue
        if len(raw) > MAX_LINE_BYTES:
            yield BadLine(number, f"{caption.name}: longer than {MAX_LINE_BYTES:,} bytes")
            continue
        try:
            text = raw.removeprefix(UTF8_BOM).decode("utf-8").strip()
        except UnicodeDecodeError as e:
            yield BadLine(number, f"{caption.name}: not UTF-8 text ({e.reason} at byte {e.start + 1})")
            continue
        yield from_text(text, style, line=number, image=image.name, id=image.name)


def _csv_header(reader: csv.DictReader) -> list[str]:
    """The header's columns, checked: a ``text`` column, no unknown one."""
    try:
        columns = reader.fieldnames
    except csv.Error as e:
        raise ValueError(f"the CSV header cannot be read ({e})") from None
    if columns is None:
        return []
    for column in columns:
        if column not in CSV_COLUMNS:
            raise ValueError(unknown_key(column, CSV_COLUMNS, "column"))
    if TEXT not in columns:
        raise ValueError(f"the CSV header has no '{TEXT}' column (found {', '.join(columns) or 'none'})")
    return columns


def _read_csv(lines: Iterable[str], style: str, checked: InputLines | None) -> Iterator[NewPost | BadLine]:
    reader = csv.DictReader(iter(lines))
    try:
        problem = checked.problem(range(1, 2)) if checked is not None else None
        if problem is not None:
            raise ValueError(f"the CSV header is {problem}")
        columns = _csv_header(reader)
    except ValueError as e:
        yield BadLine(1, str(e))
        return
    if not columns:
        return
    first = reader.line_num + 1  # the first line of the next row
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:  # the reader counts the failed row's lines only with the next row
            yield BadLine(reader.line_num + 1, f"not a CSV row ({e})")
            first = reader.line_num + 2
            continue
        number, spans = reader.line_num, range(first, reader.line_num + 1)
        first = number + 1
        problem = checked.problem(spans) if checked is not None else None
        if problem is not None:
            yield BadLine(number, problem)
            continue
        if None in row:
            yield BadLine(number, f"{len(columns) + len(row[None])} fields, the header has {len(columns)}")
            continue
        record = {k: v for k, v in row.items() if v not in (None, "")}
        record.setdefault(TEXT, "")
        try:
            yield parse_record(record, number, style)
        except ValueError as e:
            yield BadLine(number, str(e))
