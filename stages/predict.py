"""``umt predict``: tag new posts with a trained run, as JSON lines.

The input is read lazily and tagged in chunks, so a file of any size streams through in constant
memory and its first results are written at once. An output file is written as
``<output>.partial``, one flushed line per post, fsynced and renamed when the input is done:
after a crash or Ctrl-C the posts tagged so far are kept there, and ``<output>`` only ever
appears whole. A bad line (not UTF-8, invalid JSON, an unknown key, no text, an image that cannot
be found or read) is reported with its line number and the other lines still come out; with
``strict`` the first one is an error. An input of which nothing can be tagged is an error too,
naming why, and leaves no output file. With ``explain``, each entity of a post with an image gets
a PNG of the image with the entity's attention over the 7x7 grid laid over it.

What the input names is confined: an ``image`` is found inside ``--images`` or the input's own
folder (``--any-image-path`` lifts that), the output may not be the input, and neither the
partial file nor an explain picture is written through a symbolic link.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from umt.cache.durable import UnsafeFile, atomic_write_bytes, fsync_dir, open_regular
from umt.pipeline.data.new_posts import BadLine, InputLines, NewPost, read_folder, read_new_posts
from umt.pipeline.errors import ConfigError, DataFormatError, UmtError
from umt.pipeline.files import same_file
from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.run_dir import RunDir
from umt.stages.requests import PredictRequest

#: Longest piece of an entity's word or type in an --explain file name.
SLUG_CHARS = 40
#: Bad lines held back while no post has been tagged yet (then reported all the same).
HELD_LINES = 1000


class OutputClosed(UmtError):
    """The reader of standard output went away (``| head``)."""


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
    """``text`` as a safe piece of a file name: word characters and ``_`` only, never empty."""
    return re.sub(r"[^\w]+", "_", text, flags=re.UNICODE).strip("_")[:SLUG_CHARS] or "entity"


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
        name = f"line{result.post.line:05d}-{k}-{_slug(entity['entity_group'])}-{_slug(entity['word'])}.png"
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        try:
            atomic_write_bytes(folder / name, buffer.getvalue())
        except OSError as e:
            raise ConfigError(f"--explain {folder}: cannot write {name} ({e.strerror})") from None
        written.append(folder / name)
    return written


def _check_paths(req: PredictRequest) -> None:
    """The output and the explain folder, checked before the model loads."""
    if req.output is not None:
        output = Path(req.output)
        if output.is_dir():
            raise ConfigError(f"--output {output} is a folder; name the JSON-lines file to write")
        if not output.parent.is_dir():
            raise ConfigError(f"--output {output}: the folder {output.parent} does not exist")
        if not os.access(output.parent, os.W_OK):
            raise ConfigError(f"--output {output}: the folder {output.parent} is not writable")
        if req.input is not None and any(same_file(Path(req.input), t) for t in (output, _partial(output))):
            raise ConfigError(f"--output {output} is the input file; write the tags to another file")
    if req.explain is not None:
        try:
            Path(req.explain).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--explain {req.explain}: cannot create the folder ({e.strerror})") from None


def _partial(output: Path) -> Path:
    return output.with_name(output.name + ".partial")


def _open_sink(req: PredictRequest) -> tuple[IO[str], Path | None]:
    """Where the lines go, and the partial file to rename when done (None: written in place).

    A regular file is written as ``<output>.partial`` (never through a link planted there) and
    renamed when done; anything else that exists (/dev/null, a named pipe) is written in place and
    never replaced; no ``--output`` is standard output.
    """
    if req.output is None:
        return sys.stdout, None
    output = Path(req.output)
    if output.exists() and not output.is_file():
        return open(output, "w", encoding="utf-8"), None  # noqa: SIM115 - closed by the caller
    partial = _partial(output)
    try:
        fd = open_regular(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    except UnsafeFile as e:
        raise ConfigError(f"cannot write {partial}: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot write {partial}: {e.strerror}") from None
    return os.fdopen(fd, "w", encoding="utf-8"), partial


def _open_source(req: PredictRequest) -> IO[bytes]:
    if req.input is None:
        return sys.stdin.buffer
    try:
        return open(req.input, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as e:
        raise ConfigError(f"--input {req.input}: cannot be read ({e.strerror})") from None


def _nothing_tagged(origin: str, first_bad: BadLine | None, bad: int, folder: bool) -> DataFormatError:
    """The error for an input of which no post could be tagged."""
    if first_bad is not None:
        return DataFormatError(
            origin,
            first_bad.line,
            f"{first_bad.reason}; no post of the input could be tagged ({bad} bad line{'s' * (bad != 1)})",
        )
    if folder:
        return DataFormatError(origin, None, "no image files with a .txt caption beside them: nothing to tag")
    return DataFormatError(origin, None, "no posts to tag: the input is empty")


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so Python's own flush at exit stays quiet."""
    with suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(req: PredictRequest, console: Console | None = None) -> dict:
    """Tag every post of the input; returns counts and timings (posts, bad lines, posts/s, files)."""
    # Messages and the progress bar go to stderr, so stdout carries only the JSON lines.
    console = console or Console(stderr=True)
    run_dir = RunDir.open(req.run)
    config = run_dir.config()
    if req.explain is not None and (config.no_images or not get_recipe(config.model).multimodal):
        why = "was trained with --no-images" if config.no_images else "is a text-only model"
        raise ConfigError(f"--explain needs a model that reads images; {config.model} ({req.run}) {why}")
    _check_paths(req)
    from umt.pipeline.inference.posts import PostTagger
    from umt.pipeline.inference.trained import load_run

    trained = load_run(run_dir, req.device)
    tagger = PostTagger(
        trained,
        style=req.tokenizer,
        images_dir=req.images,
        features=req.features,
        weights=req.weights,
        image_cache=req.image_cache,
        batch_size=req.batch_size,
        any_image_path=req.any_image_path,
        max_image_bytes=req.max_image_mb << 20,
        max_cache_bytes=req.image_cache_mb << 20,
        front_end="cli",
    )
    ignored = None
    if tagger.ignores_images:
        why = "was trained with --no-images" if trained.multimodal else "is a text-only model"
        who = f"{escape(trained.config.model)} ({escape(str(req.run))})"
        ignored = f"[yellow]note:[/] {who} {why}: the posts' images are ignored"

    origin = str(req.input) if req.input is not None else "<stdin>"
    folder = req.input_format == "folder"
    # Relative images are looked for in --images, then in the input's own folder (stdin: here).
    base = Path(req.input) if folder else Path(req.input).parent if req.input is not None else Path.cwd()
    source = None if folder else _open_source(req)
    if folder:
        posts_in = read_folder(Path(req.input), tagger.style)
    else:
        posts_in = read_new_posts(InputLines(source), req.input_format, tagger.style)
    sink, partial = _open_sink(req)
    explained: list[Path] = []
    posts = bad = entities = 0
    first_bad: BadLine | None = None
    held: list[BadLine] = []  # bad lines not yet reported: until a post is tagged, the input may be all bad
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]tagging"),
        BarColumn(),
        TextColumn("{task.completed} posts"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,  # a live bar is invisible without a terminal, and leaves a blank line
    )
    done = False
    try:
        with progress:
            task = progress.add_task("tag", total=None, rate="")
            for chunk in _chunks(posts_in, req.chunk_size):
                new_posts = [x for x in chunk if isinstance(x, NewPost)]
                if ignored is not None and any(post.image is not None for post in new_posts):
                    console.print(ignored)  # once
                    ignored = None
                results, unusable = tagger.tag_posts(new_posts, base=base, explain=req.explain is not None)
                problems = sorted([x for x in chunk if isinstance(x, BadLine)] + unusable, key=lambda b: b.line)
                if req.strict and problems:
                    raise DataFormatError(origin, problems[0].line, problems[0].reason)
                first_bad = first_bad or (problems[0] if problems else None)
                bad += len(problems)
                held.extend(problems)
                # Held until a post is tagged, so that an input of which nothing is tagged ends in one line.
                if posts + len(results) or len(held) > HELD_LINES:
                    _report(console, origin, held)
                try:
                    for result in results:
                        sink.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
                        entities += len(result.tagged.entities)
                        if req.explain is not None:
                            explained += _explain(result, Path(req.explain))
                    sink.flush()
                except BrokenPipeError:
                    _silence_stdout()
                    raise OutputClosed(f"the output was closed after {posts} posts (broken pipe); stopped") from None
                posts += len(results)
                elapsed = time.perf_counter() - started
                progress.update(task, completed=posts, rate=f"{posts / max(elapsed, 1e-9):.1f} posts/s")
        if posts == 0:
            raise _nothing_tagged(origin, first_bad, bad, folder)
        done = True
    except BaseException:
        if partial is not None and posts:
            console.print(f"[yellow]the posts tagged so far are in {escape(str(partial))}[/]")
        raise
    finally:
        if source is not None and source is not sys.stdin.buffer:
            source.close()
        _close(sink, partial if done else None)
        if partial is not None and not done and not posts:
            partial.unlink(missing_ok=True)  # nothing was tagged: leave no file behind
    if partial is not None:
        os.replace(partial, req.output)
        fsync_dir(Path(req.output).parent)
    seconds = time.perf_counter() - started
    summary = {
        "posts": posts,
        "bad_lines": bad,
        "entities": entities,
        "seconds": round(seconds, 3),
        "posts_per_second": round(posts / seconds, 2) if seconds > 0 else None,
        "images_computed": tagger.featurizer.computed if tagger.featurizer is not None else 0,
        "explained": [str(p) for p in explained],
    }
    where = f" -> {escape(str(req.output))}" if req.output is not None else ""
    console.print(
        f"tagged {posts} posts ({entities} entities, {bad} bad lines skipped) in {seconds:.1f} s, "
        f"{summary['posts_per_second']} posts/s{where}"
        + (f"; {len(explained)} attention pictures in {escape(str(req.explain))}" if req.explain is not None else ""),
        highlight=False,
    )
    return summary


def _report(console: Console, origin: str, problems: list[BadLine]) -> None:
    """One line per bad line of the input (on stderr), then forget them."""
    for problem in problems:
        console.print(
            f"[red]{escape(origin)}:{problem.line}:[/] {escape(problem.reason)} (skipped)",
            highlight=False,
            soft_wrap=True,
        )
    problems.clear()


def _close(sink: IO[str], durable: Path | None) -> None:
    """Close the sink (not stdout); fsync it first when it is the partial file about to be renamed."""
    if sink is sys.stdout:
        with suppress(BrokenPipeError):
            sink.flush()
        return
    try:
        sink.flush()
        if durable is not None:
            os.fsync(sink.fileno())
    finally:
        sink.close()
