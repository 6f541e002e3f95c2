"""``umt report``: the paper's tables from run directories, with significance tests and a case study.

Reads what ``umt train`` wrote (``config.json``, ``metrics.json``, ``predictions_test.conll``,
``log.jsonl``) and loads no model, so it runs in seconds on any machine. The work is in
``umt.pipeline.report``; this stage prints the report and writes its files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from umt.cache.durable import atomic_write_bytes
from umt.pipeline.errors import ConfigError
from umt.pipeline.report.build import Report, build_report
from umt.pipeline.report.choose import Pick
from umt.pipeline.report.render import csv_text, latex, markdown, terminal
from umt.stages.requests import ReportRequest

#: Each format's file in ``--out``: ``table2.md``, ``table3.csv``, ...
RENDERERS = {"md": markdown, "csv": csv_text, "tex": lambda report: latex(report.table)}
FIGURES = "figures"


def _write(path: Path, text: str) -> Path:
    try:
        atomic_write_bytes(path, text.encode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    return path


def write_files(report: Report, out: Path, formats: tuple[str, ...], figures: bool) -> list[Path]:
    """The report's files under ``out`` (created): one per format, named after the table, and with
    ``figures`` the PNG files under ``out/figures``."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {out}: {e.strerror}") from None
    written = [_write(out / f"{report.table.name}.{fmt}", RENDERERS[fmt](report)) for fmt in formats]
    if figures:
        from umt.pipeline.report.figures import write_figures

        written += write_figures(report, out / FIGURES)
    return written


def run(req: ReportRequest, console: Console | None = None) -> dict:
    """Print the report of the runs under ``req.runs``, write its files; return its data
    (:meth:`Report.to_dict`, plus ``files``: the paths written)."""
    console = console or Console()
    if req.figures and importlib.util.find_spec("matplotlib") is None:  # checked before the work
        raise ConfigError("--figures needs matplotlib: pip install 'matplotlib>=3.7'")
    pick = Pick.parse(req.pick, req.where)  # checked here, not by the request: the report's modules are not light
    report = build_report(
        req.runs, ablations=req.ablations, paper=req.paper, cases=req.cases, resamples=req.resamples, pick=pick
    )
    for part in terminal(report):
        console.print(part)
    files = write_files(report, Path(req.out), req.formats, req.figures) if req.out is not None else []
    for path in files:
        console.print(f"wrote {escape(str(path))}", highlight=False)
    return {**report.to_dict(), "files": [str(p) for p in files]}
