"""``umt extract-images``: stage one, image files to an HDF5 feature cache.

The stage reads as decode -> forward -> write: decoding workers (``umt.pipeline.vision.loader``)
turn each planned chunk of ids into pixels, the frozen backbone (``umt.pipeline.vision.backbones``)
turns pixels into grids, and the cache's write transaction (``umt.cache.transaction``) stores
each finished chunk durably and assembles the file. Lock, resume, up-to-date and refusal rules
all live in the transaction.

Mistakes are reported before anything heavy loads: the options, the image folder and the ids
are checked and the output's lock is taken first; torch and torchvision load after that.

Under torchrun (``umt.pipeline.runtime.distributed``) process K of N extracts ``--shard K/N`` into its own
shard file, and the main process merges the shards into the one cache (bit for bit what one
process writes) and removes them. A cache that exists already is checked by the main process
alone, as one process would: up to date, or refused unless ``--overwrite``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from umt.cache.format import Status
from umt.cache.manifest import fingerprint
from umt.cache.merge import merge_shards
from umt.cache.paths import Shard
from umt.cache.reader import FeatureCache
from umt.cache.transaction import CacheTransaction
from umt.cache.workdir import Plan
from umt.pipeline.errors import ConfigError, UmtError
from umt.pipeline.runtime.distributed import World, current_world, joined
from umt.pipeline.vision.backbones import get_backbone
from umt.pipeline.vision.sources import resolve_source
from umt.stages.requests import DEFAULT_MAX_FAILURES, ExtractRequest
from umt.stages.tables import cache_summary


@dataclass(frozen=True)
class ExtractResult:
    """What a run did: the cache it leaves, and the images it computed in how many seconds.

    ``seconds`` covers decoding, the forward passes and the chunk writes (not the model load
    or the final assembly): the steady-state rate the progress bar shows.
    """

    path: Path
    processed: int
    seconds: float


def run(request: ExtractRequest, console: Console | None = None) -> ExtractResult:
    """Extract (or resume, or confirm) the cache described by ``request``.

    Progress goes to stderr; the summary to ``console`` (stdout by default).
    """
    console = console or Console()
    world = current_world()
    if not world.distributed:
        return _extract(request, console)
    if request.shard is not None:
        raise ConfigError("--shard: under torchrun each process takes its shard itself; drop --shard")
    device = world.device(request.device)
    with joined(world, device):
        return _extract_together(replace(request, device=device), console, world)


def _extract_together(request: ExtractRequest, console: Console, world: World) -> ExtractResult:
    """Each process its shard, then one merge by the main process."""
    source = resolve_source(
        dataset=request.dataset,
        data_root=request.data_root,
        images=request.images,
        ids_from=request.ids_from,
        out=request.out,
        shard=None,
        backbone=request.backbone,
    )
    out = source.out
    if out.exists() and not request.overwrite:
        return world.on_main(lambda: _extract(request, console))
    shown = console if world.main else Console(quiet=True)
    mine = _extract(replace(request, shard=Shard(world.rank + 1, world.size), strict=False), shown)
    done = world.gather((mine.processed, mine.seconds))

    def merge() -> None:
        shards = [Shard(k, world.size).path_for(out) for k in range(1, world.size + 1)]
        merge_shards(out, shards, overwrite=request.overwrite)
        for path in shards:
            path.unlink()
        console.print(f"merged {world.size} shards into {escape(str(out))}")

    world.barrier()
    world.on_main(merge)
    processed, seconds = sum(n for n, _ in done), max(t for _, t in done)
    return _finish(request, shown, out, len(source.ids), processed, seconds)


def _extract(request: ExtractRequest, console: Console) -> ExtractResult:
    source = resolve_source(
        dataset=request.dataset,
        data_root=request.data_root,
        images=request.images,
        ids_from=request.ids_from,
        out=request.out,
        shard=request.shard,
        backbone=request.backbone,
    )
    processed, seconds = 0, 0.0
    with CacheTransaction(source.out, overwrite=request.overwrite) as tx:  # refuses a second writer at once
        # torch and torchvision load only now, after the checks above and the lock (seconds)
        from umt.pipeline.runtime.devices import resolve_device
        from umt.pipeline.vision import extract

        device = resolve_device(request.device)
        manifest = extract.build_manifest(
            source,
            get_backbone(request.backbone),
            request.weights,
            request.dtype,
            request.amp,
            request.batch_size,
            request.shard,
            device,
        )
        shard = (request.shard.index, request.shard.count) if request.shard else (1, 1)
        plan = Plan(source.ids, request.batch_size, shard, fingerprint(manifest))
        if not tx.prepare(plan, manifest):
            console.print(f"{escape(str(source.out))} is up to date (same images and settings); nothing to do")
        else:
            if tx.damaged:
                console.print(
                    f"[yellow]discarded {len(tx.damaged)} damaged work files in {escape(str(tx.root))}; computing them "
                    "again"
                )
            if tx.resumed_chunks:
                assigned = len(plan.assigned_chunks())
                done = f"{tx.resumed_chunks} of {assigned} chunks"
                console.print(f"resuming: {done} already done in {escape(str(tx.root))}")
            if tx.todo:
                try:
                    processed, seconds = extract.compute_chunks(
                        tx,
                        source,
                        backbone=get_backbone(request.backbone),
                        weights=request.weights,
                        dtype=request.dtype,
                        amp=request.amp,
                        device=device,
                        num_workers=request.num_workers,
                    )
                except KeyboardInterrupt:
                    kept = escape(str(tx.root))
                    console.print(f"[yellow]stopped; finished chunks are kept in {kept}; run the same command again")
                    raise
            tx.commit()
            if processed:
                console.print(
                    f"extracted {processed} images in {seconds:.1f} s ({processed / seconds:.1f} img/s) on {device}"
                )
    return _finish(request, console, source.out, len(source.ids), processed, seconds)


def _finish(request: ExtractRequest, console: Console, out: Path, n_ids: int, processed: int, seconds: float):
    """The cache's summary; with --strict, an error when any image has no features."""
    with FeatureCache(out) as cache:
        cache_summary(console, cache, DEFAULT_MAX_FAILURES)
        failed = len(cache) - cache.counts()[Status.OK.label]
    if request.strict and failed:
        raise UmtError(f"{failed} of {n_ids} images have no features (--strict); the cache is {out}")
    return ExtractResult(out, processed, seconds)
