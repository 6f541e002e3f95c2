"""``umt data import``: bring a dataset in another layout into the data root (see
``umt.pipeline.data.importers`` for the layouts read)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape

from umt.pipeline.data.importers import IMPORTERS, Imported
from umt.stages.requests import DataImportRequest

_LISTED = 5


def run(request: DataImportRequest, console: Console | None = None) -> Imported:
    console = console or Console()
    root = Path(request.data_root) if request.data_root is not None else Path("data")
    result = IMPORTERS[request.format](Path(request.source), root, request.name, overwrite=request.overwrite)
    counts = ", ".join(f"{n} {split}" for split, n in result.posts.items())
    console.print(escape(f"imported {request.source} as {request.name}: {counts} posts into {result.folder}"))
    console.print(escape(f"{result.copied} images copied into {result.images}"))
    if result.missing:
        shown = ", ".join(result.missing[:_LISTED]) + (" ..." if len(result.missing) > _LISTED else "")
        console.print(f"[yellow]warning:[/] {len(result.missing)} image reference(s) have no file: {escape(shown)}")
    console.print(
        f"next: umt extract-images --dataset {request.name} --data-root {root}; "
        f"umt train --dataset {request.name} --data-root {root}"
    )
    return result
