"""The JSON files umt keeps (run directories, eval scores, summaries): written atomically, read
as untrusted input; :func:`parse_json`, the one parse of JSON that came from a file or a user;
and :func:`same_file`, which keeps an output from landing on an input.

A file read here may come from someone else (a run directory handed over), so it is read only
as a regular file, never through a symbolic link, refused above a size limit before a byte is
read, and every way it can be wrong (not UTF-8, not JSON, nested deeply enough to exhaust
Python's recursion) is a :class:`ConfigError` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from umt.cache.durable import UnsafeFile, atomic_write_bytes, read_regular
from umt.pipeline.errors import ConfigError

#: Larger than any JSON file umt writes (a run config is ~3 KB, a 50-epoch log ~20 KB).
MAX_JSON_BYTES = 64 << 20


class JSONProblem(ValueError):
    """Why a text is not usable JSON, with the 1-based line and column when the parser knows them."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None):
        super().__init__(reason)
        self.reason, self.line, self.column = reason, line, column


def parse_json(text: str) -> Any:
    """``json.loads`` of untrusted text: every way it fails is a :class:`JSONProblem`, including
    nesting deep enough to exhaust Python's recursion and an integer longer than Python converts
    (4300 digits), which ``json`` raises as RecursionError and a bare ValueError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JSONProblem(e.msg, e.lineno, e.colno) from None
    except RecursionError:
        raise JSONProblem("nested too deeply") from None
    except ValueError as e:
        raise JSONProblem(str(e).split(";")[0]) from None


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented UTF-8 JSON, written atomically; an unwritable place is a ConfigError."""
    try:
        atomic_write_bytes(path, json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None


def read_json_file(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON value of the regular file ``path``; anything wrong with it is a ConfigError naming it."""
    try:
        raw = read_regular(path, limit)
    except FileNotFoundError:
        raise ConfigError(f"{path} is missing") from None
    except UnsafeFile as e:
        raise ConfigError(f"cannot read {path}: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    try:
        return parse_json(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); the file is damaged") from None
    except JSONProblem as e:
        where = f"{path}:{e.line}" if e.line else str(path)
        raise ConfigError(f"{where}: not valid JSON ({e.reason}); the file is damaged") from None


def same_file(a: Path, b: Path) -> bool:
    """Whether the paths name one file (through links, or as spellings of one path)."""
    try:
        return Path(a).resolve() == Path(b).resolve() or (Path(a).exists() and os.path.samefile(a, b))
    except OSError:
        return False
