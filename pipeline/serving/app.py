"""``umt serve``: a trained model behind an HTTP API and a page, on FastAPI.

Endpoints (OpenAPI docs at ``/docs``):

- ``POST /v1/tag``: one post or a list (:mod:`umt.pipeline.serving.intake`); answers exactly the
  records ``umt predict`` writes (one record, or a list for a list), each entity with
  ``attention`` (the H x W grid of its attention over the image) when ``explain`` was asked and
  the model reads images. Requests arriving together are tagged in one batch
  (:mod:`umt.pipeline.serving.batcher`).
- ``GET /v1/health``, ``GET /v1/model`` (name, types, scores, whether it reads images, limits).
- ``GET /v1/predictions`` and ``GET /v1/images/{index}``: the run's test predictions against the
  gold entities, and their images (:mod:`umt.pipeline.serving.browse`).
- ``GET /``: the page (static files shipped in the package, no CDN).

Every error is JSON ``{"error": "..."}`` with a 4xx status naming the problem; an unexpected
failure is a 500 with ``{"error": "internal error"}``, logged on the server, never a traceback
to the client. With a token, every ``/v1`` endpoint but health wants ``Authorization: Bearer
<token>`` (the page asks for it).
"""

from __future__ import annotations

import hmac
import logging
import math
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from umt.pipeline.data.new_posts import NewPost
from umt.pipeline.errors import ConfigError
from umt.pipeline.inference.posts import PostTagger, Result
from umt.pipeline.inference.trained import TrainedRun
from umt.pipeline.metrics import PRIMARY
from umt.pipeline.serving.batcher import Busy, MicroBatcher, ModelThread
from umt.pipeline.serving.browse import FILTERS, TestPredictions
from umt.pipeline.serving.intake import BadRequest, Limits, Submitted, from_form, from_json

log = logging.getLogger("umt.serve")
JSON_TYPES = ("application/json",)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
MAX_PAGE = 100


@dataclass
class ServeSettings:
    """``umt serve``'s options that shape the app (host and port are uvicorn's)."""

    limits: Limits = field(default_factory=Limits)
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queued: int = 4096
    token: str | None = None
    images: Path | None = None  # the test posts' image folder, for the browse view
    image_cache: Path | None = None
    weights: str | None = None
    name: str = ""


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _grid_shape(cells: int) -> list[int]:
    side = math.isqrt(cells)
    return [side, side] if side * side == cells else [1, cells]


class _Guard:
    """ASGI middleware in front of the app: the token (when set) on every ``/v1`` path but health,
    and the body limit: a body declared or found to be over ``limit`` bytes gets a 413."""

    def __init__(self, app, limit: int, token: str | None):
        self.app = app
        self.limit = limit
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        path = scope.get("path", "")
        if self.expected is not None and path.startswith("/v1/") and path != "/v1/health":
            if not hmac.compare_digest(headers.get(b"authorization", b""), self.expected):
                refused = _error(401, "this server wants a token: send 'Authorization: Bearer <token>'")
                return await refused(scope, receive, send)
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _error(413, f"the request body is over the limit of {self.limit} bytes")(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # raised into the endpoint reading the body: its handler answers 413
                    raise BadRequest(413, f"the request body is over the limit of {self.limit} bytes")
            return message

        await self.app(scope, counted, send)


class Tagging:
    """The model side of the server: the post tagger and the batch function the batcher runs."""

    def __init__(self, trained: TrainedRun, settings: ServeSettings):
        self.trained = trained
        self.tagger = PostTagger(
            trained,
            image_cache=settings.image_cache,
            weights=settings.weights,
            max_image_bytes=settings.limits.max_image_bytes,
            front_end="server",
        )
        self.grid = _grid_shape(trained.config.model_cfg.grid)

    def work(self, items: list[tuple[NewPost, bytes | None, bool]]) -> list[Result | str]:
        """Tag a batch of (post, its image's bytes or None, explain): a Result or the reason per post."""
        posts, uploads = [], {}
        for k, (post, data, _) in enumerate(items):
            name = None
            if data is not None:
                name = f"upload{k}"
                uploads[name] = data
            posts.append(replace(post, line=k + 1, image=name))
        explain = any(wanted for *_, wanted in items) and not self.tagger.ignores_images
        results, bad = self.tagger.tag_posts(posts, explain=explain, uploads=uploads)
        out: list[Result | str] = [""] * len(items)
        for result in results:
            out[result.post.line - 1] = result
        for problem in bad:
            out[problem.line - 1] = problem.reason
        return out

    def record(self, post: NewPost, result: Result, explain: bool) -> dict:
        """What ``umt predict`` writes for ``post`` (its own line and image name), with attention if asked."""
        record = Result(post, result.tagged, None).to_json()
        if explain:
            rows, cols = self.grid
            for entity, found in zip(record["entities"], result.tagged.entities, strict=True):
                if "attention" in found:
                    values = [round(float(v), 6) for v in found["attention"]]
                    entity["attention"] = [values[r * cols : (r + 1) * cols] for r in range(rows)]
        return record


def _scores(metrics: dict) -> dict:
    out = {}
    for key, label in (("valid", "dev"), ("test", "test")):
        scores = metrics.get(key, {}).get(PRIMARY)
        if scores:
            out[label] = {
                "precision": scores["precision"],
                "recall": scores["recall"],
                "f1": scores["f1"],
                "per_type": scores.get("per_type", {}),
            }
    return out


def create_app(
    trained: TrainedRun, settings: ServeSettings | None = None, thread: ModelThread | None = None
) -> FastAPI:
    """The FastAPI app serving ``trained`` (module docstring), its torch work on ``thread``: the
    one ``trained`` was loaded on (a new one if not given); the app's batcher closes it."""
    settings = settings or ServeSettings()
    thread = thread or ModelThread()
    tagging = thread.call(Tagging, trained, settings)
    batcher = MicroBatcher(tagging.work, thread, settings.max_batch, settings.max_wait_ms / 1000, settings.max_queued)
    config = trained.config
    metrics = trained.run.metrics() if trained.run.finished else {}
    browse = TestPredictions.of(trained.run, config, settings.images)
    info = {
        "name": settings.name or trained.run.path.name,
        "model": config.model,
        "dataset": config.dataset,
        "types": sorted({label.split("-", 1)[1] for label in trained.vocab.labels if "-" in label}),
        "labels": list(trained.vocab.labels),
        "reads_images": not trained.ignores_images,
        "scores": _scores(metrics),
        "grid": tagging.grid,
        "quantize": trained.quantize,
        "token_style": tagging.tagger.style,
        "limits": settings.limits.to_json(),
        "has_predictions": browse is not None,
    }

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(
        title="umt",
        summary="Multimodal named entity recognition for social-media posts (UMT, Yu et al., ACL 2020)",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.batcher = batcher

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, error: BadRequest):
        return _error(error.status, error.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal error (logged on the server)")

    @app.get("/v1/health", summary="Whether the server is up, and what it has tagged")
    async def health() -> dict:
        return {"status": "ok", "batches": batcher.batches, "posts": batcher.items, "queued": batcher.queued}

    @app.get("/v1/model", summary="The model: name, entity types, scores, whether it reads images")
    async def model() -> dict:
        return info

    @app.post(
        "/v1/tag",
        summary="Tag one post or a list",
        description=(
            "JSON: a post {text | tokens, id?, image?: base64}, a list of posts, or {posts: [...], explain?}. "
            "Multipart: fields text | tokens, id, explain and a file 'image'; or a field 'posts' (JSON list) "
            "whose posts name uploaded files in 'image'. Answers the records `umt predict` writes."
        ),
    )
    async def tag(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        style = tagging.tagger.style
        if kind in JSON_TYPES:
            submitted: Submitted = from_json(await request.body(), style, settings.limits)
        elif kind in FORM_TYPES:
            submitted = await from_form(await _form(request, settings.limits), style, settings.limits)
        else:
            raise BadRequest(415, f"send application/json or multipart/form-data, not {kind or 'no content type'}")
        items = [
            (post, submitted.uploads.get(post.image) if post.image is not None else None, submitted.explain)
            for post in submitted.posts
        ]
        try:
            outcomes = await batcher.submit(items)
        except Busy as e:
            return _error(503, str(e))
        except ConfigError as e:
            raise BadRequest(422, str(e)) from None
        records = []
        for i, (post, outcome) in enumerate(zip(submitted.posts, outcomes, strict=True)):
            if isinstance(outcome, str):
                where = "the post" if submitted.single else f"posts[{i}]"
                raise BadRequest(422, f"{where}: {outcome}")
            records.append(tagging.record(post, outcome, submitted.explain))
        return JSONResponse(records[0] if submitted.single else records)

    @app.get("/v1/predictions", summary="The run's test predictions against the gold entities")
    def predictions(
        filter: str = Query("all", description="all, or errors: posts whose predicted entities differ from gold"),
        type: str = Query("", description="Only posts with a gold or predicted entity of this type"),
        offset: int = Query(0, ge=0),
        limit: int = Query(20, ge=1, le=MAX_PAGE),
    ) -> dict:
        if browse is None:
            raise BadRequest(404, "this model has no test predictions (predictions_test.conll)")
        if filter not in FILTERS:
            raise BadRequest(422, f"filter {filter!r}: expected one of {', '.join(FILTERS)}")
        return browse.page(filter, type, offset, limit)

    @app.get("/v1/images/{index}", summary="The image of a test post, where the run knows its image folder")
    def image(index: int):
        found = None if browse is None else browse.image(index, settings.limits.max_image_bytes)
        if found is None:
            raise BadRequest(404, f"no image for test post {index}")
        data, media = found
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})

    static = resources.files("umt.pipeline.serving") / "static"

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(str(static / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_middleware(_Guard, limit=settings.limits.max_body_bytes, token=settings.token)
    return app


async def _form(request, limits: Limits):
    try:
        return await request.form(max_files=limits.max_posts + 1, max_fields=limits.max_posts + 8)
    except BadRequest:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed multipart body: the parser's own error types
        raise BadRequest(400, f"malformed form data ({str(e) or type(e).__name__})") from None


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("umt")
    except metadata.PackageNotFoundError:  # a source tree that is not installed
        return "0+unknown"
