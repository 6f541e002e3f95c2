"""``umt extract-images``: stage one, image files to an HDF5 feature cache.

The job, in order: list the ids (from a dataset's files, an id list or a folder), sort them,
fix the plan (ids cut into forward batches), take the output's lock, then decode chunks in
DataLoader workers while the main process runs the frozen backbone, saving every finished
chunk to the work folder ``<out>.partial/`` (see ``cache.workdir``). When all chunks are done
the cache is assembled, renamed into place and the work folder removed. Killing the process at
any point and running the same command again resumes; the result is bit-for-bit the same.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cache.format import CHANNELS, FORMAT_VERSION, GRID, STORAGE_DTYPES, Status
from cache.lock import HeldLock, exclusive_lock
from cache.manifest import created_now, identity, ids_digest, mismatches, normalise
from cache.reader import FeatureCache
from cache.workdir import Chunk, Plan, WorkDir, partial_dir, read_plan
from pipeline.errors import CacheError, ConfigError, UmtError
from stages.backbone import BACKBONE, BATCHNORM, LAYER, GridExtractor, build_extractor, weights_identity
from stages.cache_tools import print_summary
from stages.extract_config import DEFAULT_MAX_FAILURES, ExtractConfig, Shard
from stages.extract_loader import ChunkImages, LoadedChunk, chunk_loader
from stages.extract_source import Source, resolve_source
from stages.image_decode import PREPROCESSING

DEVICES = ("auto", "cpu", "cuda")
TORCH_DTYPES = {"float16": torch.float16, "float32": torch.float32}
#: Mixed precision on CUDA. float16 rather than bfloat16: the grid is stored as float16, whose
#: 11-bit mantissa bfloat16's 8 bits would waste; ResNet activations are far inside its range.
AUTOCAST_DTYPE = torch.float16
#: On a CPU the backbone already uses every core; one worker decoding ahead is enough (decode
#: costs ~3 ms of the ~140 ms per image a ResNet-152 forward takes on two cores; see the benchmark).
CPU_WORKERS = 1
#: On a GPU decoding is the bottleneck; use the cores, up to this many.
GPU_MAX_WORKERS = 8
PACKAGES = ("umt", "torch", "torchvision", "pillow", "h5py", "numpy")

__all__ = ["ExtractConfig", "ExtractResult", "Shard", "run"]


@dataclass(frozen=True)
class ExtractResult:
    """What a run did: the cache it leaves, and the images it computed in how many seconds.

    ``seconds`` covers decoding, the forward passes and the chunk writes (not the model load
    or the final assembly): the steady-state rate the progress bar shows.
    """

    path: Path
    processed: int
    seconds: float


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise ConfigError(f"--device {name!r}: expected one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)


def _versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "unknown"
    return found


def build_manifest(config: ExtractConfig, source: Source, device: torch.device) -> dict[str, Any]:
    """The manifest of the cache this run writes, less ``counts`` (known after assembly)."""
    amp = config.amp and device.type == "cuda"
    manifest = {
        "format_version": FORMAT_VERSION,
        "backbone": BACKBONE,
        "layer": LAYER,
        "grid": [GRID, GRID],
        "channels": CHANNELS,
        "weights": weights_identity(config.weights),
        "preprocessing": PREPROCESSING,
        "dtype": config.dtype,
        "compute": {
            "device": device.type,
            "autocast": str(AUTOCAST_DTYPE).removeprefix("torch.") if amp else None,
            "batchnorm": BATCHNORM,
        },
        "plan": {"ids_sha256": ids_digest(source.ids), "total": len(source.ids), "chunk_size": config.batch_size},
        "source": source.record,
        "versions": _versions(),
    }
    if config.shard is not None:
        manifest["shard"] = {"index": config.shard.index, "count": config.shard.count}
    return normalise(manifest)


def _fingerprint(manifest: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a run and its resumption (the shard is in the plan itself)."""
    return {**identity(manifest), "source": manifest["source"]}


def _check_options(config: ExtractConfig) -> None:
    if config.dtype not in STORAGE_DTYPES:
        raise ConfigError(f"--dtype {config.dtype!r}: expected one of {', '.join(STORAGE_DTYPES)}")
    if config.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if config.num_workers is not None and config.num_workers < 0:
        raise ConfigError("--num-workers must be 0 or more")


def _existing_is_current(out: Path, manifest: dict[str, Any], overwrite: bool) -> bool:
    """True when ``out`` already holds this run's result; refuses a different one unless ``overwrite``."""
    if not out.exists():
        return False
    try:
        with FeatureCache(out) as existing:
            found = existing.manifest
    except CacheError as e:
        if overwrite:
            return False
        raise CacheError(f"{out} exists and is not a usable umt cache ({e}); pass --overwrite to replace it") from e
    wanted = {**_fingerprint(manifest), "shard": manifest.get("shard")}
    problems = mismatches({**_fingerprint(found), "shard": found.get("shard")}, wanted)
    if not problems:
        return True
    if overwrite:
        return False
    raise CacheError(
        f"{out} already exists and was made with other settings (" + "; ".join(problems) + "); "
        "pass --overwrite to replace it, or choose another --out"
    )


class RateColumn(ProgressColumn):
    """Images per second, over rich's recent-speed window."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:6.1f} img/s" if speed else "   -   img/s", style="progress.data.speed")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def _default_workers(device: torch.device) -> int:
    if device.type == "cuda":
        return min(GPU_MAX_WORKERS, os.cpu_count() or 1)
    return CPU_WORKERS


def _start_decoding(
    plan: Plan, todo: list[int], images_dir: Path, config: ExtractConfig, device: torch.device, lock: HeldLock
) -> Iterator[LoadedChunk]:
    """The chunks ``todo``, decoded in worker processes that start (fork) right away."""
    workers = config.num_workers if config.num_workers is not None else _default_workers(device)
    loader = chunk_loader(ChunkImages(plan, todo, images_dir), workers, pin_memory=device.type == "cuda", lock=lock)
    return iter(loader)


def _extract(
    extractor: GridExtractor,
    chunks: Iterator[LoadedChunk],
    work: WorkDir,
    todo: list[int],
    config: ExtractConfig,
    device: torch.device,
) -> int:
    """Run the backbone over the decoded ``chunks`` (the chunks ``todo``) into ``work``.

    Returns the number of images processed.
    """
    storage = TORCH_DTYPES[config.dtype]
    on_gpu = device.type == "cuda"
    amp = torch.autocast("cuda", dtype=AUTOCAST_DTYPE) if on_gpu and config.amp else contextlib.nullcontext()
    total = sum(len(work.plan.chunk(i)) for i in work.plan.assigned_chunks())
    done = total - sum(len(work.plan.chunk(i)) for i in todo)
    processed = 0
    # One background writer, at most one chunk in flight: the file write and fsync overlap the
    # next forward pass, and memory holds at most two chunks of grids.
    with _progress() as progress, ThreadPoolExecutor(max_workers=1) as writer, torch.inference_mode():
        task = progress.add_task("extracting", total=total, completed=done)
        pending: Future[None] | None = None
        for chunk in chunks:
            n = len(chunk.status)
            grids = np.empty((0, GRID, GRID, CHANNELS), dtype=config.dtype)  # (0, 7, 7, 2048): nothing decoded
            if chunk.pixels.shape[0]:
                with amp:
                    grid = extractor(chunk.pixels.to(device, non_blocking=True))  # (n_ok, 7, 7, 2048)
                grid = grid.to(storage)
                if not bool(torch.isfinite(grid).all()):
                    raise ConfigError(
                        f"the backbone's output does not fit {config.dtype} (inf or nan in chunk {chunk.index}); "
                        "use --dtype float32 --overwrite"
                    )
                grids = grid.cpu().numpy()
            if pending is not None:
                pending.result()
            ids = work.plan.chunk(chunk.index)
            pending = writer.submit(
                work.write_chunk, chunk.index, Chunk(ids, chunk.status, chunk.reasons, grids)
            )
            processed += n
            progress.advance(task, n)
        if pending is not None:
            pending.result()
    return processed


def _build(
    config: ExtractConfig,
    plan: Plan,
    manifest: dict[str, Any],
    source: Source,
    device: torch.device,
    lock: HeldLock,
    console: Console,
) -> tuple[int, float]:
    """Compute the missing chunks, assemble the cache, drop the work folder; (images, seconds)."""
    work_root = partial_dir(source.out)
    # Check the work folder before the slow model load, and create it only after the load:
    # a bad --weights then leaves nothing behind.
    WorkDir.check(work_root, plan, reset=config.overwrite)
    damaged = WorkDir(work_root, plan).discard_damaged()
    if damaged:
        console.print(f"[yellow]discarded {len(damaged)} damaged work files in {work_root}; computing them again")
    todo = WorkDir(work_root, plan).missing_chunks()
    processed, seconds = 0, 0.0
    if todo:
        # Fork the decoding workers before the model fills the heap: pages a forked child shares
        # are copied when the parent writes them, which made the first forward passes up to a
        # third slower. The workers also decode the first chunks while the weights load.
        chunks = _start_decoding(plan, todo, source.images_dir, config, device, lock)
        extractor = build_extractor(config.weights).to(device)
    work = WorkDir.open(work_root, plan)
    assigned = len(plan.assigned_chunks())
    if assigned > len(todo):
        console.print(f"resuming: {assigned - len(todo)} of {assigned} chunks already done in {work_root}")
    if todo:
        started = time.perf_counter()
        try:
            processed = _extract(extractor, chunks, work, todo, config, device)
        except KeyboardInterrupt:
            console.print(f"[yellow]stopped; finished chunks are kept in {work_root}; run the same command again")
            raise
        seconds = time.perf_counter() - started
    try:
        work.assemble(source.out, {**manifest, "created": created_now()}, config.dtype)
    except OSError as e:  # h5py reports a full disk or a read-only folder as OSError
        raise CacheError(f"cannot write {source.out}: {e}") from e
    work.remove()
    if processed:
        console.print(f"extracted {processed} images in {seconds:.1f} s ({processed / seconds:.1f} img/s) on {device}")
    return processed, seconds


def run(config: ExtractConfig, console: Console | None = None) -> ExtractResult:
    """Extract (or resume, or confirm) the cache described by ``config``.

    Progress goes to stderr; the summary to ``console`` (stdout by default).
    """
    _check_options(config)
    console = console or Console()
    source = resolve_source(config)
    device = resolve_device(config.device)
    manifest = build_manifest(config, source, device)
    shard = (config.shard.index, config.shard.count) if config.shard else (1, 1)
    plan = Plan(source.ids, config.batch_size, shard, _fingerprint(manifest))
    out = source.out
    out.parent.mkdir(parents=True, exist_ok=True)
    processed, seconds = 0, 0.0
    with exclusive_lock(out) as lock:
        if _existing_is_current(out, manifest, config.overwrite):
            work_root = partial_dir(out)
            if read_plan(work_root) == normalise(plan.to_json()):
                WorkDir(work_root, plan).remove()  # left by a run that died between rename and cleanup
            console.print(f"{out} is up to date (same images and settings); nothing to do")
        else:
            processed, seconds = _build(config, plan, manifest, source, device, lock, console)
    with FeatureCache(out) as cache:
        print_summary(console, cache, DEFAULT_MAX_FAILURES)
        failed = len(cache) - cache.counts()[Status.OK.label]
    if config.strict and failed:
        raise UmtError(f"{failed} of {len(source.ids)} images have no features (--strict); the cache is {out}")
    return ExtractResult(out, processed, seconds)
