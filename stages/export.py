"""``umt export``: a finished run as a shareable model folder (``umt.pipeline.sharing.export``)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape

from umt.pipeline.sharing.export import export_run
from umt.stages.requests import ExportRequest


def run(req: ExportRequest, console: Console | None = None) -> dict:
    """Write the export; returns its folder and the files in it (relative names, sizes in bytes)."""
    console = console or Console()
    out = export_run(req.run, req.out, name=req.name, overwrite=req.overwrite)
    files = {}
    for folder, _, names in os.walk(out):
        for name in sorted(names):
            path = os.path.join(folder, name)
            files[os.path.relpath(path, out)] = os.path.getsize(path)
    total = sum(files.values())
    console.print(f"exported {escape(str(req.run))} -> {escape(str(out))}: {len(files)} files, {total / 2**20:.1f} MiB")
    console.print(f"share it: hf upload OWNER/NAME {escape(str(out))}   (then umt.load('OWNER/NAME'))", highlight=False)
    return {"out": str(out), "files": files}
