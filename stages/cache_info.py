"""``umt cache info``: a cache's manifest, size on disk, counts by status and failed images."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from umt.cache.errors import CacheError
from umt.cache.reader import FeatureCache
from umt.cache.workdir import count_done, partial_dir
from umt.stages.requests import CacheInfoRequest
from umt.stages.tables import cache_summary

BYTES_PER_MB = 1024 * 1024


def run(request: CacheInfoRequest, console: Console | None = None) -> None:
    console = console or Console()
    path = Path(request.path)
    if not path.exists():
        progress = count_done(partial_dir(path))
        if progress is not None:
            done, total = progress
            raise CacheError(
                f"{path} does not exist yet: an unfinished extraction is in {partial_dir(path)} "
                f"({done} of {total} chunks done); run the same umt extract-images command to finish it"
            )
    with FeatureCache(path) as cache:
        size = path.stat().st_size / BYTES_PER_MB
        manifest = Table(title=escape(f"{path} ({size:.1f} MB on disk)"), show_header=False)
        manifest.add_column("key", style="bold")
        manifest.add_column("value", overflow="fold")
        for key, value in sorted(cache.manifest.items()):
            shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            manifest.add_row(Text(key), Text(shown))
        console.print(manifest)
        cache_summary(console, cache, request.max_failures)
