"""``umt predict``: tag new posts with a trained run, as JSON lines.

The input is read lazily and tagged in chunks, so a file of any size streams through in constant
memory and its first results are written at once. An output file is written as
``<output>.partial``, one flushed line per post, and renamed when the input is done: after a
crash or Ctrl-C the posts tagged so far are kept there, and ``<output>`` only ever appears
whole. A bad line (invalid JSON, no text, an image that cannot be found or read) is reported
with its line number and the other lines still come out; with ``strict`` the first one is an
error. With ``explain``, each entity of a post with an image gets a PNG of the image with the
entity's attention over the 7x7 grid laid over it.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from umt.cache.durable import atomic_write_bytes
from umt.pipeline.data.new_posts import BadLine, NewPost, read_folder, read_new_posts
from umt.pipeline.errors import ConfigError, DataFormatError
from umt.pipeline.models.registry import get_recipe
from umt.pipeline.run_dir import RunDir
from umt.stages.requests import PredictRequest


def _chunks(items: Iterator[NewPost | BadLine], size: int) -> Iterator[list[NewPost | BadLine]]:
    chunk: list[NewPost | BadLine] = []
    posts = 0
    for item in items:
        chunk.append(item)
        posts += isinstance(item, NewPost)
        if posts >= size:
            yield chunk
            chunk, posts = [], 0
    if chunk:
        yield chunk


def _slug(text: str) -> str:
    return re.sub(r"[^\w]+", "_", text, flags=re.UNICODE).strip("_")[:40] or "entity"


def _explain(result, folder: Path) -> list[Path]:
    """One PNG per entity of a post the model saw an image of."""
    from umt.pipeline.vision.overlay import attention_overlay

    written = []
    if result.image_path is None:
        return written
    for k, entity in enumerate(result.tagged.entities, start=1):
        if "attention" not in entity:
            continue
        caption = f"line {result.post.line}: {entity['word']!r} {entity['entity_group']} (p = {entity['score']:.2f})"
        picture = attention_overlay(result.image_path, entity["attention"], caption)
        target = folder / f"line{result.post.line:05d}-{k}-{entity['entity_group']}-{_slug(entity['word'])}.png"
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        atomic_write_bytes(target, buffer.getvalue())
        written.append(target)
    return written


def _check_writable(req: PredictRequest) -> None:
    for path, what in ((req.output, "--output"), (req.explain, "--explain")):
        if path is None:
            continue
        folder = Path(path) if what == "--explain" else Path(path).parent
        if what == "--explain":
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"--explain {path}: cannot create the folder ({e.strerror})") from None
        elif not folder.is_dir():
            raise ConfigError(f"--output {path}: the folder {folder} does not exist")


def run(req: PredictRequest, console: Console | None = None) -> dict:
    """Tag every post of the input; returns counts and timings (posts, bad lines, posts/s, files)."""
    # Messages and the progress bar go to stderr, so stdout carries only the JSON lines.
    console = console or Console(stderr=True)
    run_dir = RunDir.open(req.run)
    config = run_dir.config()
    if req.explain is not None and (config.no_images or not get_recipe(config.model).multimodal):
        why = "was trained with --no-images" if config.no_images else "is a text-only model"
        raise ConfigError(f"--explain needs a model that reads images; {config.model} ({req.run}) {why}")
    _check_writable(req)
    from umt.pipeline.post_tagger import PostTagger

    trained = run_dir.load(req.device)
    tagger = PostTagger(
        trained, style=req.tokenizer, images_dir=req.images, features=req.features, weights=req.weights,
        image_cache=req.image_cache, batch_size=req.batch_size,
    )
    ignored = None
    if tagger.ignores_images:
        why = "was trained with --no-images" if trained.multimodal else "is a text-only model"
        ignored = f"[yellow]note:[/] {trained.config.model} ({req.run}) {why}: the posts' images are ignored"

    origin = str(req.input) if req.input is not None else "<stdin>"
    base = Path(req.input).parent if req.input is not None else Path.cwd()
    folder = req.input_format == "folder"
    if folder:
        source = None
        posts_in = read_folder(Path(req.input), tagger.style)
    else:
        source = open(req.input, encoding="utf-8", newline="") if req.input is not None else sys.stdin  # noqa: SIM115
        posts_in = read_new_posts(source, req.input_format, tagger.style)
    # A regular file is written as <output>.partial and renamed when done; anything else that
    # exists (/dev/null, a named pipe) is written in place and never replaced.
    regular = req.output is not None and (not Path(req.output).exists() or Path(req.output).is_file())
    partial = Path(f"{req.output}.partial") if regular else None
    target = partial if partial is not None else req.output
    sink = open(target, "w", encoding="utf-8") if target is not None else sys.stdout  # noqa: SIM115
    explained: list[Path] = []
    posts = bad = entities = 0
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]tagging"), BarColumn(), TextColumn("{task.completed} posts"),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console, transient=True,
    )
    try:
        with progress:
            task = progress.add_task("tag", total=None, rate="")
            for chunk in _chunks(posts_in, req.chunk_size):
                new_posts = [x for x in chunk if isinstance(x, NewPost)]
                if ignored is not None and any(post.image is not None for post in new_posts):
                    console.print(ignored)  # once
                    ignored = None
                results, unusable = tagger.tag_posts(new_posts, base=base, explain=req.explain is not None)
                problems = [x for x in chunk if isinstance(x, BadLine)] + unusable
                for problem in sorted(problems, key=lambda b: b.line):
                    if req.strict:
                        raise DataFormatError(origin, problem.line, problem.reason)
                    console.print(f"[red]{origin}:{problem.line}:[/] {problem.reason} (skipped)", highlight=False)
                    bad += 1
                for result in results:
                    sink.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
                    entities += len(result.tagged.entities)
                    if req.explain is not None:
                        explained += _explain(result, Path(req.explain))
                sink.flush()
                posts += len(results)
                elapsed = time.perf_counter() - started
                progress.update(task, completed=posts, rate=f"{posts / max(elapsed, 1e-9):.1f} posts/s")
    except UnicodeDecodeError as e:
        raise DataFormatError(origin, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except BaseException:
        if partial is not None:
            console.print(f"[yellow]the posts tagged so far are in {partial}[/]")
        raise
    finally:
        if source is not None and source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            sink.close()
    if partial is not None:
        os.replace(partial, req.output)
    seconds = time.perf_counter() - started
    summary = {
        "posts": posts, "bad_lines": bad, "entities": entities, "seconds": round(seconds, 3),
        "posts_per_second": round(posts / seconds, 2) if seconds > 0 else None,
        "images_computed": tagger.featurizer.computed if tagger.featurizer is not None else 0,
        "explained": [str(p) for p in explained],
    }
    where = f" -> {req.output}" if req.output is not None else ""
    console.print(
        f"tagged {posts} posts ({entities} entities, {bad} bad lines skipped) in {seconds:.1f} s, "
        f"{summary['posts_per_second']} posts/s{where}"
        + (f"; {len(explained)} attention pictures in {req.explain}" if req.explain is not None else "")
    )
    return summary
