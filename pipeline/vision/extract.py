"""Stage one's computation: decode -> forward -> write, chunk by chunk, into a cache transaction.

``umt.stages.extract_images`` takes the output's lock first and imports this module after it
(torch and torchvision take seconds to load), so that a second writer is refused at once.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
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

from umt.cache.format import FORMAT_VERSION
from umt.cache.manifest import ids_digest, normalise
from umt.cache.paths import Shard
from umt.cache.transaction import CacheTransaction
from umt.cache.workdir import Chunk
from umt.pipeline.errors import ConfigError
from umt.pipeline.runtime.environment import package_versions
from umt.pipeline.vision.backbones import Backbone
from umt.pipeline.vision.loader import ChunkImages, chunk_loader
from umt.pipeline.vision.sources import Source

#: Mixed precision on CUDA. float16 rather than bfloat16: the grid is stored as float16, whose
#: 11-bit mantissa bfloat16's 8 bits would waste; ResNet activations are far inside its range.
AUTOCAST_DTYPE = torch.float16
#: On a CPU the backbone already uses every core; one worker decoding ahead is enough (decode
#: costs ~3 ms of the ~140 ms per image a ResNet-152 forward takes on two cores; see the benchmark).
CPU_WORKERS = 1
#: On a GPU decoding is the bottleneck; use the cores, up to this many.
GPU_MAX_WORKERS = 8


def build_manifest(
    source: Source,
    backbone: Backbone,
    weights: str,
    dtype: str,
    amp: bool,
    batch_size: int,
    shard: Shard | None,
    device: torch.device,
) -> dict[str, Any]:
    """The manifest of the cache a run writes, less ``counts`` and ``created`` (known at commit)."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "backbone": backbone.name,
        "layer": backbone.layer,
        **backbone.grid.to_manifest(),
        "weights": backbone.weights_identity(weights),
        "preprocessing": backbone.preprocessing,
        "dtype": dtype,
        "compute": {
            "device": device.type,
            "autocast": str(AUTOCAST_DTYPE).removeprefix("torch.") if amp and device.type == "cuda" else None,
            **dict(backbone.compute),
        },
        "plan": {"ids_sha256": ids_digest(source.ids), "total": len(source.ids), "chunk_size": batch_size},
        "source": source.record,
        "versions": package_versions(),
    }
    if shard is not None:
        manifest["shard"] = {"index": shard.index, "count": shard.count}
    return normalise(manifest)


def default_workers(device: torch.device) -> int:
    if device.type == "cuda":
        return min(GPU_MAX_WORKERS, os.cpu_count() or 1)
    return CPU_WORKERS


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


def compute_chunks(
    tx: CacheTransaction,
    source: Source,
    *,
    backbone: Backbone,
    weights: str,
    dtype: str,
    amp: bool,
    device: torch.device,
    num_workers: int | None,
) -> tuple[int, float]:
    """Decode -> forward -> write every chunk of ``tx.todo``; (images processed, seconds).

    The seconds cover decoding, the forward passes and the chunk writes, not the model load:
    the steady-state rate the progress bar shows.
    """
    workers = num_workers if num_workers is not None else default_workers(device)
    # Fork the decoding workers before the model fills the heap: pages a forked child shares
    # are copied when the parent writes them, which made the first forward passes up to a
    # third slower. The workers also decode the first chunks while the weights load.
    loader = chunk_loader(
        ChunkImages(tx.plan, tx.todo, source.images_dir, backbone.resize),
        workers,
        pin_memory=device.type == "cuda",
        lock=tx.lock,
    )
    chunks = iter(loader)
    extractor = backbone.build(weights).to(device)
    tx.begin()  # the work folder appears only once the model has loaded
    storage = getattr(torch, dtype)
    autocast_on = amp and device.type == "cuda"
    plan = tx.plan
    total = sum(len(plan.chunk(i)) for i in plan.assigned_chunks())
    done = total - sum(len(plan.chunk(i)) for i in tx.todo)
    processed = 0
    started = time.perf_counter()
    # One background writer, at most one chunk in flight: the file write and fsync overlap the
    # next forward pass, and memory holds at most two chunks of grids.
    with _progress() as progress, ThreadPoolExecutor(max_workers=1) as writer, torch.inference_mode():
        task = progress.add_task("extracting", total=total, completed=done)
        pending: Future[None] | None = None
        for chunk in chunks:
            grids = np.empty((0, *backbone.grid.stored), dtype=dtype)  # (0, rows, cols, C): nothing decoded
            if chunk.pixels.shape[0]:
                with torch.autocast("cuda", dtype=AUTOCAST_DTYPE, enabled=autocast_on):
                    grid = extractor(chunk.pixels.to(device, non_blocking=True))  # (n_ok, rows, cols, C)
                grid = grid.to(storage)
                if not bool(torch.isfinite(grid).all()):
                    raise ConfigError(
                        f"the backbone's output does not fit {dtype} (inf or nan in chunk {chunk.index}); "
                        "use --dtype float32 --overwrite"
                    )
                grids = grid.cpu().numpy()
            if pending is not None:
                pending.result()
            finished = Chunk(plan.chunk(chunk.index), chunk.status, chunk.reasons, grids)
            pending = writer.submit(tx.write, chunk.index, finished)
            processed += len(chunk.status)
            progress.advance(task, len(chunk.status))
        if pending is not None:
            pending.result()
    return processed, time.perf_counter() - started
