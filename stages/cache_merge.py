"""``umt cache merge``: join the shard files of a sharded extraction (see ``umt.cache.merge``)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from umt.cache.merge import merge_shards
from umt.cache.reader import FeatureCache
from umt.stages.requests import DEFAULT_MAX_FAILURES, CacheMergeRequest
from umt.stages.tables import cache_summary


def run(request: CacheMergeRequest, console: Console | None = None) -> Path:
    console = console or Console()
    merge_shards(Path(request.out), [Path(p) for p in request.shards], overwrite=request.overwrite)
    console.print(f"merged {len(request.shards)} shards into {escape(str(request.out))}")
    with FeatureCache(request.out) as cache:
        cache_summary(console, cache, DEFAULT_MAX_FAILURES)
    return Path(request.out)
