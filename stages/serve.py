"""``umt serve``: a trained model behind an HTTP API and a page (``umt.pipeline.serving.app``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from umt.pipeline.errors import ConfigError
from umt.stages.requests import ServeRequest

if TYPE_CHECKING:
    from umt.pipeline.inference.trained import TrainedRun

MIB = 1 << 20


def build(req: ServeRequest) -> tuple[Any, TrainedRun]:
    """The app for ``req``, its model loaded (what :func:`run` serves; tests drive it directly)."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (image uploads)
    except ImportError as e:
        missing = f"umt serve needs its extra packages ({e.name} is missing)"
        raise ConfigError(f"{missing}: pip install 'umt[serve]'") from None
    from umt.pipeline.inference.trained import load_run
    from umt.pipeline.serving.app import ServeSettings, create_app
    from umt.pipeline.serving.batcher import ModelThread
    from umt.pipeline.serving.intake import Limits
    from umt.pipeline.sharing.source import locate

    source = locate(req.run)
    limits = Limits(
        max_posts=req.max_posts,
        max_image_bytes=req.max_image_mb * MIB,
        max_pixels=req.max_pixels,
        max_body_bytes=req.max_body_mb * MIB,
    )
    settings = ServeSettings(
        limits=limits,
        max_batch=req.max_batch,
        max_wait_ms=req.max_wait_ms,
        max_queued=req.max_queued,
        token=req.token,
        images=req.images,
        image_cache=req.image_cache,
        weights=req.weights,
        name=source.hub_id or source.path.resolve().name,
    )
    thread = ModelThread()  # the model is loaded on the thread that will run it (ModelThread)
    try:
        trained = thread.call(load_run, source.path, req.device, quantize=req.quantize)
        return create_app(trained, settings, thread), trained
    except BaseException:
        thread.close()
        raise


def run(req: ServeRequest, console: Console | None = None) -> None:
    """Serve until Ctrl-C."""
    console = console or Console(stderr=True)
    app, trained = build(req)
    import uvicorn

    where = f"http://{'[' + req.host + ']' if ':' in req.host else req.host}:{req.port}"
    reads = "reads images" if not trained.ignores_images else "text only"
    console.print(
        f"serving {escape(str(req.run))} ({escape(trained.config.model)}, {reads}"
        f"{', int8' if req.quantize == 'int8' else ''}) at {escape(where)}  "
        f"(page: {escape(where)}/, API docs: {escape(where)}/docs)" + ("; a token is required" if req.token else ""),
        highlight=False,
    )
    uvicorn.run(app, host=req.host, port=req.port, log_level="warning", access_log=False)
