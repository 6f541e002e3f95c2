"""``umt cache info`` and ``umt cache merge``, and the status summary ``extract-images`` ends with."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cache.format import Status
from cache.merge import merge_shards
from cache.reader import FeatureCache
from cache.workdir import count_done, partial_dir
from pipeline.errors import CacheError
from stages.extract_config import DEFAULT_MAX_FAILURES, InfoConfig, MergeConfig

BYTES_PER_MB = 1024 * 1024


def print_summary(console: Console, cache: FeatureCache, max_failures: int) -> None:
    """Counts by status, then the failed images (id, status, reason), at most ``max_failures``."""
    counts = cache.counts()
    table = Table(title=f"{cache.path.name}: {len(cache)} images", title_justify="left")
    table.add_column("status")
    table.add_column("images", justify="right")
    for status in Status:
        style = "green" if status is Status.OK else ("red" if counts[status.label] else "")
        table.add_row(status.label, str(counts[status.label]), style=style)
    console.print(table)
    failures = cache.failures()
    if not failures:
        return
    shown = failures if max_failures <= 0 else failures[:max_failures]
    listing = Table(title=f"failures ({len(shown)} of {len(failures)} shown)", title_justify="left")
    for column in ("id", "status", "reason"):
        listing.add_column(column, overflow="fold")
    for image_id, status, reason in shown:
        listing.add_row(image_id, status, reason)
    console.print(listing)


def info(config: InfoConfig, console: Console | None = None) -> None:
    """Print the cache's manifest, size on disk, counts by status and failures."""
    console = console or Console()
    path = Path(config.path)
    if not path.exists():
        progress = count_done(partial_dir(path))
        if progress is not None:
            done, total = progress
            raise CacheError(
                f"{path} does not exist yet: an unfinished extraction is in {partial_dir(path)} "
                f"({done} of {total} chunks done); run the same umt extract-images command to finish it"
            )
    with FeatureCache(path) as cache:
        manifest = Table(title=f"{path} ({path.stat().st_size / BYTES_PER_MB:.1f} MB on disk)", show_header=False)
        manifest.add_column("key", style="bold")
        manifest.add_column("value", overflow="fold")
        for key, value in sorted(cache.manifest.items()):
            manifest.add_row(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        console.print(manifest)
        print_summary(console, cache, config.max_failures)


def merge(config: MergeConfig, console: Console | None = None) -> Path:
    """Join shard files into ``config.out`` (see ``cache.merge``) and summarise the result."""
    console = console or Console()
    merge_shards(Path(config.out), [Path(p) for p in config.shards], overwrite=config.overwrite)
    console.print(f"merged {len(config.shards)} shards into {config.out}")
    with FeatureCache(config.out) as cache:
        print_summary(console, cache, DEFAULT_MAX_FAILURES)
    return Path(config.out)
