"""``umt extract-images``: stage one, image files to an HDF5 feature cache.

The stage reads as decode -> forward -> write: decoding workers (``umt.pipeline.vision.loader``)
turn each planned chunk of ids into pixels, the frozen backbone (``umt.pipeline.vision.backbone``)
turns pixels into grids, and the cache's write transaction (``umt.cache.transaction``) stores
each finished chunk durably and assembles the file. Lock, resume, up-to-date and refusal rules
all live in the transaction.

Mistakes are reported before anything heavy loads: the options, the image folder and the ids
are checked and the output's lock is taken first; torch and torchvision load after that.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from umt.cache.format import Status
from umt.cache.manifest import fingerprint
from umt.cache.reader import FeatureCache
from umt.cache.transaction import CacheTransaction
from umt.cache.workdir import Plan
from umt.pipeline.errors import UmtError
from umt.pipeline.tables import cache_summary
from umt.pipeline.vision.sources import resolve_source
from umt.stages.requests import DEFAULT_MAX_FAILURES, ExtractRequest


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
    source = resolve_source(
        dataset=request.dataset, data_root=request.data_root, images=request.images,
        ids_from=request.ids_from, out=request.out, shard=request.shard,
    )
    processed, seconds = 0, 0.0
    with CacheTransaction(source.out, overwrite=request.overwrite) as tx:  # refuses a second writer at once
        # torch and torchvision load only now, after the checks above and the lock (seconds)
        from umt.pipeline.devices import resolve_device
        from umt.pipeline.vision import extract

        device = resolve_device(request.device)
        manifest = extract.build_manifest(
            source, request.weights, request.dtype, request.amp, request.batch_size, request.shard, device
        )
        shard = (request.shard.index, request.shard.count) if request.shard else (1, 1)
        plan = Plan(source.ids, request.batch_size, shard, fingerprint(manifest))
        if not tx.prepare(plan, manifest):
            console.print(f"{source.out} is up to date (same images and settings); nothing to do")
        else:
            if tx.damaged:
                console.print(
                    f"[yellow]discarded {len(tx.damaged)} damaged work files in {tx.root}; computing them again"
                )
            if tx.resumed_chunks:
                assigned = len(plan.assigned_chunks())
                console.print(f"resuming: {tx.resumed_chunks} of {assigned} chunks already done in {tx.root}")
            if tx.todo:
                try:
                    processed, seconds = extract.compute_chunks(
                        tx, source, weights=request.weights, dtype=request.dtype, amp=request.amp, device=device,
                        num_workers=request.num_workers,
                    )
                except KeyboardInterrupt:
                    console.print(f"[yellow]stopped; finished chunks are kept in {tx.root}; run the same command again")
                    raise
            tx.commit()
            if processed:
                console.print(
                    f"extracted {processed} images in {seconds:.1f} s ({processed / seconds:.1f} img/s) on {device}"
                )
    with FeatureCache(source.out) as cache:
        cache_summary(console, cache, DEFAULT_MAX_FAILURES)
        failed = len(cache) - cache.counts()[Status.OK.label]
    if request.strict and failed:
        raise UmtError(f"{failed} of {len(source.ids)} images have no features (--strict); the cache is {source.out}")
    return ExtractResult(source.out, processed, seconds)
