"""``umt predict``: tag new posts with a trained run, as JSON lines.

The input is read lazily and tagged in chunks, so a file of any size streams through in constant
memory and its first results are written at once. An output file is written as
``<output>.partial``, one flushed line per post, fsynced and renamed when the input is done:
after a crash or Ctrl-C the posts tagged so far are kept there, and ``<output>`` only ever
appears whole. A bad line (not UTF-8, invalid JSON, an unknown key, no text, an image that cannot
be found or read) is reported with its line number and the other lines still come out; with
``strict`` the first one is an error. An input of which nothing can be tagged is an error too,
naming why, and leaves no output file. With ``explain``, each entity of a post with an image gets
a PNG of the image with the entity's attention over the backbone's grid (7x7 for ResNet-152) laid over it.

What the input names is confined: an ``image`` is found inside ``--images`` or the input's own
folder (``--any-image-path`` lifts that), the output may not be the input, and neither the
partial file nor an explain picture is written through a symbolic link.

Under torchrun (``torchrun --nproc_per_node N -m umt.cli predict RUN --input FILE ...``) the
processes share the work. Each reads (and tokenises) the whole input itself, so it must be a
file or a folder (standard input is refused); chunk k of ``chunk_size`` posts is tagged by rank
``k % N``. After each round of N chunks every process hands the others its chunk's JSON lines,
bad lines and a status (:meth:`World.gather <umt.pipeline.runtime.distributed.World.gather>`),
and rank 0 alone writes them in input order, reports the bad lines and prints: the output
(file or stdout) is byte for byte the one process's, and no other process opens it. Bad lines,
``strict`` and the nothing-tagged error behave as in one process, decided from the shared
lines: every process raises the same error in the same round. A failure of one process alone
(an explain picture that cannot be written, a broken pipe on rank 0, a crash while tagging) is
passed on at the next exchange: that process raises it, the others :class:`PeerFailed`, and none
waits forever; rank 0 tidies its partial file before any process exits. Explain pictures are
written by the process that tagged the post, once the round's lines are shared, so a strict
stop leaves the same pictures as one process does. The counts are the sum over the processes
(an image new to the chunks of two processes in one round is computed by both, and counted
twice in ``images_computed``), and the summary adds ``posts_per_process``.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from umt.cache.durable import UnsafeFile, atomic_write_bytes, fsync_dir, open_regular
from umt.pipeline.data.new_posts import BadLine, InputLines, NewPost, read_folder, read_new_posts
from umt.pipeline.errors import USER_ERRORS, ConfigError, DataFormatError, UmtError
from umt.pipeline.files import same_file
from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.runtime.distributed import PeerFailed, World, current_world, joined
from umt.pipeline.sharing.source import open_run
from umt.pipeline.wording import counted
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


def _prepare(req: PredictRequest) -> tuple:
    """The tagger, the note that it ignores the posts' images (None: it reads them), the input's
    name in messages, whether it is a folder, and the folder relative images are looked for in."""
    run_dir = open_run(req.run)
    config = run_dir.config()
    if req.explain is not None and (config.no_images or not get_recipe(config.model).multimodal):
        why = "was trained with --no-images" if config.no_images else "is a text-only model"
        raise ConfigError(f"--explain needs a model that reads images; {config.model} ({req.run}) {why}")
    _check_paths(req)
    from umt.pipeline.inference.posts import PostTagger
    from umt.pipeline.inference.trained import load_run

    trained = load_run(run_dir, req.device, quantize=req.quantize)
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
    return tagger, ignored, origin, folder, base


def _progress(console: Console, shown: bool) -> Progress:
    return Progress(
        TextColumn("[bold]tagging"),
        BarColumn(),
        TextColumn("{task.completed} posts"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not shown,
    )


def run(req: PredictRequest, console: Console | None = None) -> dict:
    """Tag every post of the input; returns counts and timings (posts, bad lines, posts/s, files).

    Under torchrun the processes share the chunks and rank 0 writes (see the module docstring)."""
    # Messages and the progress bar go to stderr, so stdout carries only the JSON lines.
    console = console or Console(stderr=True)
    world = current_world()
    if world.distributed:
        return _run_together(req, console, world)
    tagger, ignored, origin, folder, base = _prepare(req)
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
    # A live bar is invisible without a terminal, and leaves a blank line.
    progress = _progress(console, console.is_terminal)
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
    computed = tagger.featurizer.computed if tagger.featurizer is not None else 0
    return _summary(console, req, posts, bad, entities, time.perf_counter() - started, computed, explained)


def _summary(
    console: Console,
    req: PredictRequest,
    posts: int,
    bad: int,
    entities: int,
    seconds: float,
    computed: int,
    explained: list,
    per_process: list[int] | None = None,
) -> dict:
    """The counts ``run`` returns, and the line that says them; ``per_process``: under torchrun."""
    summary = {
        "posts": posts,
        "bad_lines": bad,
        "entities": entities,
        "seconds": round(seconds, 3),
        "posts_per_second": round(posts / seconds, 2) if seconds > 0 else None,
        "images_computed": computed,
        "explained": [str(p) for p in explained],
    }
    if per_process is not None:
        summary["posts_per_process"] = per_process
    where = f" -> {escape(str(req.output))}" if req.output is not None else ""
    shared = f"; {len(per_process)} processes tagged {' + '.join(map(str, per_process))}" if per_process else ""
    console.print(
        f"tagged {counted(posts, 'post')} ({counted(entities, 'entity', 'entities')}, "
        f"{counted(bad, 'bad line')} skipped) in {seconds:.1f} s, "
        f"{summary['posts_per_second']} posts/s{where}"
        + (f"; {len(explained)} attention pictures in {escape(str(req.explain))}" if req.explain is not None else "")
        + shared,
        highlight=False,
    )
    return summary


# ---- under torchrun ----------------------------------------------------------------------------


@dataclass
class _Share:
    """What one process hands the others after a round (every process gets every share)."""

    ended: bool = False  # it read no chunk for this round: the input is done
    lines: list[str] | None = None  # the JSON lines of the chunk it tagged; None: no chunk for it this round
    problems: list[BadLine] = field(default_factory=list)  # that chunk's bad lines, in line order
    entities: int = 0
    failure: str | None = None  # why it stopped: then every process stops
    computed: int = 0  # images it computed (sent once the input is done)
    explained: list[tuple[int, list[str]]] = field(default_factory=list)  # (chunk, pictures) (ditto)


def _rounds(chunks: Iterator[list], size: int) -> Iterator[list[list]]:
    """``size`` chunks at a time (fewer in the last round): chunk ``k`` of a round is rank ``k``'s."""
    while batch := list(itertools.islice(chunks, size)):
        yield batch


def _described(error: BaseException) -> str:
    return str(error) if isinstance(error, USER_ERRORS) else f"{type(error).__name__}: {error}"


def _stop_if_any(world: World, mine: BaseException | None, failures: list[str | None]) -> None:
    """Raise in every process when one failed: its own error there, :class:`PeerFailed` elsewhere."""
    failed = next(((rank, why) for rank, why in enumerate(failures) if why is not None), None)
    if failed is None:
        return
    if mine is not None:
        raise mine
    raise PeerFailed(f"rank {world.rank}: rank {failed[0]} stopped ({failed[1]})")


def _run_together(req: PredictRequest, console: Console, world: World) -> dict:
    if req.input is None:
        raise ConfigError(
            "under torchrun every process reads the input itself: name a file with --input "
            "(standard input cannot be shared between the processes)"
        )
    device = world.device(req.device)
    shown = console if world.main else Console(stderr=True, quiet=True)
    with joined(world, device):
        return _tag_together(replace(req, device=device), shown, world)


def _tag_together(req: PredictRequest, console: Console, world: World) -> dict:
    """``run`` by one process of a torchrun job: its chunks tagged, every round's lines shared,
    rank 0 writing them in input order (see the module docstring)."""
    failure: BaseException | None = None  # this process's own, passed on at the next exchange
    agreed = False  # every process is raising the same decision: rank 0 tidies up before any exits
    source = sink = partial = None
    posts = bad = entities = 0
    per_process = [0] * world.size
    explained: list[tuple[int, list[str]]] = []  # the pictures this process drew, by chunk
    done = False
    try:
        try:
            tagger, ignored, origin, folder, base = _prepare(req)
            source = None if folder else _open_source(req)
            if folder:
                posts_in = read_folder(Path(req.input), tagger.style)
            else:
                posts_in = read_new_posts(InputLines(source), req.input_format, tagger.style)
            if world.main:
                sink, partial = _open_sink(req)
        except Exception as e:  # noqa: BLE001 - passed on to the others, then raised again
            failure = e
        failures = world.gather(None if failure is None else _described(failure))
        agreed = True
        _stop_if_any(world, failure, failures)
        agreed = False

        first_bad: BadLine | None = None
        held: list[BadLine] = []  # as in one process: held until a post is tagged
        started = time.perf_counter()
        rounds = _rounds(_chunks(posts_in, req.chunk_size), world.size)
        first = 0  # the number of this round's first chunk
        with (progress := _progress(console, world.main and console.is_terminal)):
            task = progress.add_task("tag", total=None, rate="")
            while True:
                share, results, batch = _Share(), [], []
                if failure is None:
                    try:
                        batch = next(rounds, [])
                        share.ended = not batch
                        if world.rank < len(batch):
                            chunk = batch[world.rank]
                            new_posts = [x for x in chunk if isinstance(x, NewPost)]
                            results, unusable = tagger.tag_posts(new_posts, base=base, explain=req.explain is not None)
                            share.lines = [json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in results]
                            share.problems = sorted(
                                [x for x in chunk if isinstance(x, BadLine)] + unusable, key=lambda b: b.line
                            )
                            share.entities = sum(len(r.tagged.entities) for r in results)
                        if share.ended:
                            share.computed = tagger.featurizer.computed if tagger.featurizer is not None else 0
                            share.explained = explained
                    except Exception as e:  # noqa: BLE001 - passed on to the others, then raised again
                        failure = e
                if failure is not None:
                    share = _Share(failure=_described(failure))
                shares = world.gather(share)
                agreed = True
                _stop_if_any(world, failure, [s.failure for s in shares])
                if all(s.ended for s in shares):
                    agreed = False
                    break
                if any(s.ended for s in shares):
                    raise DataFormatError(origin, None, "the input changed while the processes read it; tag it again")
                for rank, s in enumerate(shares):
                    if s.lines is None:
                        continue
                    if (
                        world.main
                        and ignored is not None
                        and any(isinstance(x, NewPost) and x.image is not None for x in batch[rank])
                    ):
                        console.print(ignored)  # once
                        ignored = None
                    if req.strict and s.problems:
                        raise DataFormatError(origin, s.problems[0].line, s.problems[0].reason)
                    first_bad = first_bad or (s.problems[0] if s.problems else None)
                    bad += len(s.problems)
                    if world.main:
                        held.extend(s.problems)
                        if posts + len(s.lines) or len(held) > HELD_LINES:
                            _report(console, origin, held)
                        if failure is None:
                            try:
                                sink.writelines(s.lines)
                                sink.flush()
                            except BrokenPipeError:
                                _silence_stdout()
                                failure = OutputClosed(
                                    f"the output was closed after {posts} posts (broken pipe); stopped"
                                )
                            except OSError as e:
                                failure = e
                    if rank == world.rank and req.explain is not None and failure is None:
                        try:  # drawn only now, so that a strict stop earlier in the round draws none
                            pictures = [p for result in results for p in _explain(result, Path(req.explain))]
                            explained.append((first + rank, [str(p) for p in pictures]))
                        except Exception as e:  # noqa: BLE001 - passed on to the others, then raised again
                            failure = e
                    posts += len(s.lines)
                    entities += s.entities
                    per_process[rank] += len(s.lines)
                    elapsed = time.perf_counter() - started
                    progress.update(task, completed=posts, rate=f"{posts / max(elapsed, 1e-9):.1f} posts/s")
                agreed = False
                first += world.size
        if posts == 0:
            agreed = True
            raise _nothing_tagged(origin, first_bad, bad, folder)
        done = True
    except BaseException:
        if partial is not None and posts:
            console.print(f"[yellow]the posts tagged so far are in {escape(str(partial))}[/]")
        raise
    finally:
        if source is not None:
            source.close()
        if sink is not None:
            _close(sink, partial if done else None)
        if partial is not None and not done and not posts:
            partial.unlink(missing_ok=True)  # nothing was tagged: leave no file behind
        if agreed:
            with suppress(Exception):
                world.barrier()  # torchrun stops the others when one exits: rank 0 tidies up first
    if partial is not None:
        os.replace(partial, req.output)
        fsync_dir(Path(req.output).parent)
    pictures = [p for _, drawn in sorted((c for s in shares for c in s.explained), key=lambda c: c[0]) for p in drawn]
    computed = sum(s.computed for s in shares)
    return _summary(console, req, posts, bad, entities, time.perf_counter() - started, computed, pictures, per_process)


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
