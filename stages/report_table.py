"""Rich tables for metrics, shared by ``umt train``, ``umt eval`` and ``umt demo``."""

from __future__ import annotations

from rich.table import Table

from pipeline.metrics import PRIMARY


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def metrics_table(scores: dict, title: str) -> Table:
    """Per-type and overall P/R/F1 (seqeval default scheme) plus the strict IOB2 overall row."""
    table = Table(title=title, title_justify="left")
    for column in ("", "P", "R", "F1", "support"):
        table.add_column(column, justify="left" if not column else "right")
    main = scores[PRIMARY]
    for name, row in main["per_type"].items():
        table.add_row(name, _pct(row["precision"]), _pct(row["recall"]), _pct(row["f1"]), str(row["support"]))
    table.add_section()
    table.add_row(
        "[bold]overall[/]",
        _pct(main["precision"]),
        _pct(main["recall"]),
        f"[bold]{_pct(main['f1'])}[/]",
        str(main["support"]),
    )
    strict = scores["strict_iob2"]
    table.add_row(
        "strict IOB2",
        _pct(strict["precision"]),
        _pct(strict["recall"]),
        _pct(strict["f1"]),
        str(strict["support"]),
    )
    return table


def comparison_table(rows: list[tuple[str, dict]], title: str, split: str = "test") -> Table:
    """One row per run: overall P/R/F1 on ``split`` and F1 per type."""
    types = sorted({t for _, m in rows for t in m[split][PRIMARY]["per_type"]})
    table = Table(title=title, title_justify="left")
    table.add_column("model")
    for column in [*types, "P", "R", "F1"]:
        table.add_column(column, justify="right")
    for name, metrics in rows:
        main = metrics[split][PRIMARY]
        per_type = [_pct(main["per_type"][t]["f1"]) if t in main["per_type"] else "-" for t in types]
        table.add_row(
            name, *per_type, _pct(main["precision"]), _pct(main["recall"]), f"[bold]{_pct(main['f1'])}[/]"
        )
    return table
