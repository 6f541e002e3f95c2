"""Rich tables shared by the commands: metrics (train, eval, demo) and a cache's status summary.

Scores are stored as fractions in [0, 1] (every JSON file) and shown to people as percentages
with two decimals (every table and progress line): :func:`umt.pipeline.metrics.pct` is the one conversion. Titles,
type names, model names, image ids and reasons come from data and are shown as plain text,
never read as rich markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from umt.cache.format import Status
from umt.pipeline.metrics import PRIMARY, pct

if TYPE_CHECKING:
    from umt.cache.reader import FeatureCache


def metrics_table(scores: dict, title: str) -> Table:
    """Per-type and overall P/R/F1 (seqeval default scheme) plus the strict IOB2 overall row."""
    table = Table(title=escape(title), title_justify="left")
    for column in ("", "P", "R", "F1", "support"):
        table.add_column(column, justify="left" if not column else "right")
    main = scores[PRIMARY]
    for name, row in main["per_type"].items():
        table.add_row(Text(name), pct(row["precision"]), pct(row["recall"]), pct(row["f1"]), str(row["support"]))
    table.add_section()
    table.add_row(
        "[bold]overall[/]",
        pct(main["precision"]),
        pct(main["recall"]),
        f"[bold]{pct(main['f1'])}[/]",
        str(main["support"]),
    )
    strict = scores["strict_iob2"]
    table.add_row(
        "strict IOB2",
        pct(strict["precision"]),
        pct(strict["recall"]),
        pct(strict["f1"]),
        str(strict["support"]),
    )
    return table


def comparison_table(rows: list[tuple[str, dict]], title: str, split: str = "test") -> Table:
    """One row per run: overall P/R/F1 on ``split`` and F1 per type."""
    types = sorted({t for _, m in rows for t in m[split][PRIMARY]["per_type"]})
    table = Table(title=escape(title), title_justify="left")
    table.add_column("model")
    for column in [*types, "P", "R", "F1"]:
        table.add_column(Text(column), justify="right")
    for name, metrics in rows:
        main = metrics[split][PRIMARY]
        per_type = [pct(main["per_type"][t]["f1"]) if t in main["per_type"] else "-" for t in types]
        table.add_row(Text(name), *per_type, pct(main["precision"]), pct(main["recall"]), f"[bold]{pct(main['f1'])}[/]")
    return table


def cache_summary(console: Console, cache: FeatureCache, max_failures: int) -> None:
    """Counts by status, then the failed images (id, status, reason), at most ``max_failures``."""
    counts = cache.counts()
    table = Table(title=escape(f"{cache.path.name}: {len(cache)} images"), title_justify="left")
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
        listing.add_row(Text(image_id), status, Text(reason))
    console.print(listing)
