"""Reading a data file into lines, with every decoding problem reported by file and line.

Both readers go through :func:`read_lines`, so they agree on what a line is: text is UTF-8
(a leading byte-order mark is dropped), lines end at ``\\n`` and one ``\\r`` before it is
removed (CRLF files). Nothing else is split or stripped: ``str.splitlines`` would also break
at U+001C..U+001E, U+0085 and U+2028, characters that can be tokens of a tweet.
"""

from __future__ import annotations

from pathlib import Path

from umt.pipeline.errors import DataFormatError

UTF8_BOM = "\ufeff"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
NUL = b"\x00"


def _line_of(raw: bytes, position: int) -> int:
    """1-based line number of byte ``position``."""
    return raw.count(b"\n", 0, position) + 1


def read_lines(path: Path) -> list[str]:
    """The lines of ``path`` without their terminators; DataFormatError for unreadable text."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, None, "no such file") from None
    except IsADirectoryError:
        raise DataFormatError(path, None, "is a folder, expected a data file") from None
    except OSError as e:
        raise DataFormatError(path, None, f"cannot read: {e.strerror}") from None
    if raw.startswith(UTF16_BOMS):
        raise DataFormatError(path, 1, "file is UTF-16 encoded; save it as UTF-8")
    if NUL in raw:
        where = raw.index(NUL)
        raise DataFormatError(
            path, _line_of(raw, where), "contains NUL bytes: a binary file or UTF-16 text, expected UTF-8 text"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataFormatError(
            path,
            _line_of(raw, e.start),
            f"not UTF-8 text: {e.reason} {raw[e.start : e.end]!r} at byte {column} of the line",
        ) from None
    text = text.removeprefix(UTF8_BOM)
    if "\r" in text and "\n" not in text:
        raise DataFormatError(path, 1, "lines end with a bare CR (classic Mac); convert the line endings to LF")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the terminator of the last line, not an extra empty line
    return [line.removesuffix("\r") for line in lines]
