"""What ``POST /v1/tag`` accepts, checked before anything reaches the model.

Two encodings, the same posts (the keys of ``umt predict``'s JSON lines: ``text`` or ``tokens``,
optionally ``id``; ``image`` is the image itself, never a path on the server):

- ``application/json``: one post ``{"text": ..., "image": "<base64>"}``, a list of posts, or
  ``{"posts": [...], "explain": true}``. ``image`` is the file's bytes in base64 (a
  ``data:image/...;base64,`` prefix is allowed).
- ``multipart/form-data``: one post as the fields ``text`` (or ``tokens``, a JSON list), ``id``
  and an uploaded file ``image``; or a field ``posts`` holding the JSON list, each post's
  ``image`` naming an uploaded file field. An ``explain`` field (``true``/``false``) asks for
  each entity's attention over the image grid.

Everything is bounded by :class:`Limits` (options of ``umt serve``): the request body, the posts
per request, an image's bytes and pixels. What is wrong is a :class:`BadRequest` naming it, with
the HTTP status the server answers (400 malformed, 413 too large, 415 not an image, 422 invalid).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from umt.pipeline.data.new_posts import IMAGE, NewPost, lone_surrogate, parse_record
from umt.pipeline.files import JSONProblem, parse_json
from umt.pipeline.vision.decode import header_problem

MIB = 1 << 20
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Limits:
    """What one request may hold (``umt serve --max-posts`` and the like)."""

    max_posts: int = 64
    max_image_bytes: int = 8 * MIB
    max_pixels: int = 40_000_000
    max_body_bytes: int = 32 * MIB
    max_text_chars: int = 20_000

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


class BadRequest(Exception):
    """A request the server refuses: ``status`` and a message naming the problem."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Submitted:
    """The posts of one request, their uploaded images by name, and whether to explain."""

    posts: list[NewPost]
    uploads: dict[str, bytes]
    explain: bool
    single: bool  # one post, not a list: answered with one record


def _flag(value: Any, what: str = "explain") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE + FALSE:
        return value.strip().lower() in TRUE
    raise BadRequest(422, f"'{what}' must be true or false")


def check_image(name: str, data: bytes, limits: Limits) -> None:
    """Refuse an upload that is too large, not an image of an allowed format, or too many pixels."""
    if len(data) > limits.max_image_bytes:
        raise BadRequest(413, f"{name}: the image is {len(data)} bytes, over the limit of {limits.max_image_bytes}")
    problem = header_problem(data)
    if problem:
        raise BadRequest(415, f"{name}: not an image umt reads ({problem})")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only: no pixel is decoded here
            width, height = img.size
    except Exception as e:  # noqa: BLE001 - untrusted bytes: whatever Pillow makes of them, it is no image
        raise BadRequest(415, f"{name}: not an image umt reads ({type(e).__name__})") from None
    if width * height > limits.max_pixels:
        raise BadRequest(
            413, f"{name}: the image is {width} x {height} pixels, over the limit of {limits.max_pixels} pixels"
        )


def _posts(records: list[Any], style: str, limits: Limits) -> list[NewPost]:
    if not records:
        raise BadRequest(422, "no posts: send a post with 'text' (or 'tokens'), or a non-empty list of them")
    if len(records) > limits.max_posts:
        raise BadRequest(413, f"{len(records)} posts in one request, over the limit of {limits.max_posts}")
    posts = []
    for i, record in enumerate(records):
        where = f"posts[{i}]" if len(records) > 1 else "the post"
        if isinstance(record, dict):
            text = record.get("text")
            if isinstance(text, str) and len(text) > limits.max_text_chars:
                raise BadRequest(413, f"{where}: 'text' has {len(text)} characters, over {limits.max_text_chars}")
        try:
            post = parse_record(record, i + 1, style)
        except ValueError as e:
            raise BadRequest(422, f"{where}: {e}") from None
        posts.append(post)
    return posts


def _decode_base64(value: str, where: str) -> bytes:
    if value.startswith("data:"):
        head, _, value = value.partition(",")
        if not head.endswith(";base64"):
            raise BadRequest(422, f"{where}: a data URL image must be base64 (data:image/...;base64,...)")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            422, f"{where}: 'image' must be the image file's bytes in base64 (the server reads no paths)"
        ) from None


def from_json(body: bytes, style: str, limits: Limits) -> Submitted:
    """The posts of a JSON body (module docstring)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "the body is not UTF-8 JSON") from None
    try:
        data = parse_json(text)
    except JSONProblem as e:
        raise BadRequest(400, f"malformed JSON: {e}") from None
    explain = False
    if isinstance(data, dict) and "posts" in data:
        unknown = sorted(set(data) - {"posts", "explain"})
        if unknown:
            raise BadRequest(422, f"unknown key {unknown[0]!r}; a request has 'posts' and optionally 'explain'")
        explain = _flag(data.get("explain", False))
        records = data["posts"]
        if not isinstance(records, list):
            raise BadRequest(422, "'posts' must be a list of posts")
    elif isinstance(data, dict):
        explain = _flag(data.pop("explain", False))
        records = [data]
    elif isinstance(data, list):
        records = data
    else:
        raise BadRequest(422, f"expected a post (a JSON object) or a list of posts, found {type(data).__name__}")
    uploads: dict[str, bytes] = {}
    for i, record in enumerate(records):
        if isinstance(record, dict) and isinstance(record.get(IMAGE), str):
            where = f"posts[{i}]" if len(records) > 1 else "the post"
            if len(record[IMAGE]) > limits.max_image_bytes * 4 // 3 + 64:
                raise BadRequest(413, f"{where}: the image is over the limit of {limits.max_image_bytes} bytes")
            data_bytes = _decode_base64(record[IMAGE], where)
            name = f"image{i}"
            check_image(f"{where} image", data_bytes, limits)
            uploads[name] = data_bytes
            record = {**record, IMAGE: name}
            records[i] = record
    single = isinstance(data, dict) and "posts" not in data
    return Submitted(_posts(records, style, limits), uploads, explain, single)


async def from_form(form: Mapping[str, Any], style: str, limits: Limits) -> Submitted:
    """The posts of a multipart form (module docstring): ``form`` is Starlette's FormData."""
    files: dict[str, Any] = {}
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            files[key] = value
        else:
            fields[key] = value
    for key, value in fields.items():
        problem = lone_surrogate(value)
        if problem:
            raise BadRequest(422, f"field {key!r} {problem}")
    explain = _flag(fields.pop("explain", "false"))
    if "posts" in fields:
        extra = sorted(set(fields) - {"posts"})
        if extra:
            raise BadRequest(422, f"unknown field {extra[0]!r} beside 'posts'")
        try:
            records = parse_json(fields["posts"])
        except JSONProblem as e:
            raise BadRequest(400, f"field 'posts': malformed JSON: {e}") from None
        if not isinstance(records, list):
            raise BadRequest(422, "field 'posts' must be a JSON list of posts")
    else:
        record: dict[str, Any] = dict(fields)
        if "tokens" in record:
            try:
                record["tokens"] = parse_json(record["tokens"])
            except JSONProblem as e:
                raise BadRequest(400, f"field 'tokens': malformed JSON: {e}") from None
        if IMAGE in files:
            record[IMAGE] = IMAGE
        records = [record]
    uploads: dict[str, bytes] = {}
    named = {r.get(IMAGE) for r in records if isinstance(r, dict) and isinstance(r.get(IMAGE), str)}
    for name in sorted(named):
        if name not in files:
            raise BadRequest(422, f"a post names the image {name!r}, but no file was uploaded under that name")
        data = await files[name].read(limits.max_image_bytes + 1)
        label = getattr(files[name], "filename", None) or name
        check_image(label, data, limits)
        uploads[name] = data
    unused = sorted(set(files) - named)
    if unused:
        raise BadRequest(422, f"the uploaded file {unused[0]!r} is named by no post")
    return Submitted(_posts(records, style, limits), uploads, explain, single="posts" not in fields)
