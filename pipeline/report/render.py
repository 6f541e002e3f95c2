"""A :class:`Report` drawn for people (rich tables, Markdown, LaTeX) and for programs (CSV).

Every renderer reads the same :class:`ReportTable` (display strings in percent) and the same
comparisons, configurations, case study and run states; none computes a score. The terminal
shows one table per dataset (two column blocks of ``mean ± std`` do not fit a terminal's
width); Markdown and LaTeX put the datasets' blocks side by side, as the paper does. CSV has one row per system and
dataset, numbers as percentages with four decimals. Every format has a ``backbone`` column right
after the system's name: the image backbone of the row's features, a dash where it reads none.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence

from rich.console import Group as RichGroup
from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from umt.pipeline.metrics import pct
from umt.pipeline.report.aggregate import Stat
from umt.pipeline.report.arrange import (
    DASH,
    ReportTable,
    TableSpec,
    backbone_cell,
    format_p,
    paper_backbone_cell,
    quoted_scores,
)
from umt.pipeline.report.build import Report
from umt.pipeline.report.cases import CaseStudy, show_entities
from umt.pipeline.report.runs import RunState, System
from umt.pipeline.report.significance import Comparison

PAPER_STYLE = "dim italic"
RIGHT, WRONG = "✓", "✗"


def _percent(x: float | None) -> str:
    """A CSV number: percent with four decimals, empty for none."""
    return "" if x is None else f"{100 * x:.4f}"


def _f1(x: float | None) -> str:
    return DASH if x is None else pct(x)


def _delta(c: Comparison) -> str:
    return DASH if c.f1_a is None else f"{100 * (c.f1_a - c.f1_b):+.2f}"


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds)) or DASH


# ---- the terminal ------------------------------------------------------------------------------


def _texts(*strings: str) -> list[Text]:
    """Cells as plain text: words, paths and entity types are never read as rich markup ("[link]")."""
    return [Text(s) for s in strings]


def rich_tables(table: ReportTable) -> list[Table]:
    """One rich table per dataset: the row labels and backbones, then that dataset's columns."""
    out = []
    for dataset in table.datasets:
        shown = Table(title=escape(f"{table.title}: {dataset}"), title_justify="left")
        ours = [row.label for _, rows in table.sections for row in rows if not row.quoted]
        shown.add_column("system", min_width=max(map(len, ours), default=6))  # quoted labels may wrap, ours not
        shown.add_column("backbone", no_wrap=True)
        for column in table.columns[dataset]:
            shown.add_column(column, justify="right")  # a narrow terminal wraps "mean ± std" rather than cut it
        for index, (title, rows) in enumerate(table.sections):
            if index:
                shown.add_section()
            if title:
                shown.add_row(Text(title, style="bold"))
            for row in rows:
                cells = _texts(row.label, row.backbone, *row.cells[dataset])
                shown.add_row(*cells, style=PAPER_STYLE if row.quoted else None)
        out.append(shown)
    return out


#: What the significance table's numbers are (they differ a little from the main table's means).
POOLED = (
    "F1 A, F1 B: micro F1 over the (post, seed) pairs of the seeds both systems have, pooled, as the test sees "
    "them (so not exactly the table's mean over seeds); p: two-sided, paired approximate randomisation."
)


def significance_table(comparisons: Sequence[Comparison]) -> Table:
    table = Table(
        title="Paired approximate randomisation (test F1, seqeval default scheme)", title_justify="left",
        caption=POOLED, caption_justify="left",
    )  # fmt: skip
    for column in ("dataset", "A", "B", "seeds", "F1 A", "F1 B", "Δ", "p", "A vs B"):
        table.add_column(column, justify="right" if column in ("F1 A", "F1 B", "Δ", "p") else "left")
    for c in comparisons:
        p = format_p(c.p) if c.p is not None else c.note
        table.add_row(*_texts(c.dataset, c.a.label, c.b.label, _seeds(c.seeds), _f1(c.f1_a), _f1(c.f1_b), _delta(c), p,
                              c.verdict))  # fmt: skip
    return table


def case_tables(study: CaseStudy) -> list[RenderableType]:
    title = f"Case study, {study.dataset}" + (f", seed {study.seed}" if study.seed is not None else "")
    if not study.cases:
        return [Text(f"{title}: no case ({study.note or 'the systems agree on every post'})")]
    table = Table(title=escape(title), title_justify="left", show_lines=True)
    table.add_column("post", no_wrap=True)
    table.add_column("entities")
    for case in study.cases:
        table.add_row(f"#{case.index}", Text(" ".join(case.words), style="bold"))
        table.add_row(*_texts("gold", show_entities(case.gold, case.words)))
        for label, predicted in case.predicted.items():
            mark = RIGHT if predicted == case.gold else WRONG
            table.add_row(*_texts(f"{mark} {label}", show_entities(predicted, case.words)))
    notes = [Text(study.note, style="dim")] if study.note else []
    return [table, *notes]


#: The configurations listing: one line per configuration of each row that had several.
CONFIGURATION_COLUMNS = ("dataset", "system", "settings", "seeds", "status", "dev F1")


def _configurations(report: Report) -> list[tuple[str, ...]]:
    """Each row's configurations (dev F1 only: the test scores of the ones not chosen are not shown)."""
    return [
        (c.dataset, c.system.label, c.describe(group), _seeds(group.seeds), status,
         Stat.of([run.dev_f1 for run in group.runs]).show())
        for c in report.choices
        for group, status in c.configurations
    ]  # fmt: skip


def _configurations_title(report: Report) -> str:
    pick = report.choices[0].pick
    return f"Configurations (--pick {pick.by}{' ' + pick.filter if pick.where else ''})"


def configurations_table(report: Report) -> Table:
    table = Table(title=escape(_configurations_title(report)), title_justify="left")
    for column in CONFIGURATION_COLUMNS:
        table.add_column(column, justify="right" if column == "dev F1" else "left", overflow="fold")
    for row in _configurations(report):
        table.add_row(*_texts(*row))
    return table


def status_table(report: Report) -> RenderableType:
    """The runs the tables do not count, and why."""
    problems = report.problems
    lines: list[RenderableType] = []
    if problems:
        table = Table(title=f"Runs not counted ({len(problems)})", title_justify="left")
        for column in ("state", "run", "note"):
            table.add_column(column, overflow="fold")
        for run in problems:
            style = None if run.state is RunState.MISSING else "yellow"
            table.add_row(*_texts(run.state.value, str(run.path), run.note), style=style)
        lines.append(table)
    else:
        lines.append(Text("Every run found under the runs folder is counted.", style="green"))
    if report.elsewhere:
        lines.append(Text(_elsewhere(report)))
    return RichGroup(*lines)


def _elsewhere(report: Report) -> str:
    other = "umt report" if report.spec.number == 3 else "umt report --ablations"
    listing = ", ".join(f"{g.system.label} on {g.dataset} ({len(g.runs)} seeds)" for g in report.elsewhere)
    return f"Finished runs shown by `{other}`, not here: {listing}."


def terminal(report: Report) -> list[RenderableType]:
    """What ``umt report`` prints, in order."""
    out: list[RenderableType] = [*rich_tables(report.table)]
    out += [Text(f"{i}. {note}", style="dim") for i, note in enumerate(report.table.footnotes, 1)]
    if report.choices:
        out.append(configurations_table(report))
    if report.comparisons:
        out.append(significance_table(report.comparisons))
    for study in report.cases:
        out += case_tables(study)
    out.append(status_table(report))
    return out


# ---- Markdown ------------------------------------------------------------------------------


_MD_SPECIAL = set("\\`*_|<>")


def _md(text: str) -> str:
    """``text`` shown as is in Markdown: a tweet's ``*`` or ``_`` formats nothing, a ``|`` splits no cell."""
    return "".join(f"\\{c}" if c in _MD_SPECIAL else c for c in text)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_from: int = 1) -> list[str]:
    """A pipe table of cells given as Markdown (escape data with :func:`_md` first)."""
    rule = ["---" if i < right_from else "---:" for i in range(len(header))]
    return ["| " + " | ".join(cells) + " |" for cells in (header, rule, *rows)]


def _main_md(table: ReportTable) -> list[str]:
    several = len(table.datasets) > 1
    header = ["system", "backbone"]
    header += [_md(f"{d} {c}" if several else c) for d in table.datasets for c in table.columns[d]]
    rows = []
    width = len(header) - 1
    for title, members in table.sections:
        if title:
            rows.append([f"**{_md(title)}**"] + [""] * width)
        for row in members:
            cells = [_md(c) for c in (row.label, row.backbone, *(c for d in table.datasets for c in row.cells[d]))]
            rows.append([f"*{c}*" if c else c for c in cells] if row.quoted else cells)
    return _md_table(header, rows, right_from=2)


def markdown(report: Report) -> str:
    """The report as one Markdown document: table, footnotes, significance, case study, run states."""
    table = report.table
    lines = [f"# {_md(table.title)}", "", f"Runs: `{report.root}`.", ""]
    lines += _main_md(table) if table.datasets else ["No finished run of this table's systems."]
    lines += ["", *(f"{i}. {_md(note)}" for i, note in enumerate(table.footnotes, 1)), ""]
    if report.choices:
        rows = [[_md(cell) for cell in row] for row in _configurations(report)]
        lines += [f"## {_md(_configurations_title(report))}", "", *_md_table(CONFIGURATION_COLUMNS, rows, 5), ""]
    if report.comparisons:
        lines += ["## Significance", "", _md(POOLED), ""]
        rows = [
            [_md(cell) for cell in (c.dataset, c.a.label, c.b.label, _seeds(c.seeds), _f1(c.f1_a), _f1(c.f1_b),
                                    _delta(c), format_p(c.p) if c.p is not None else c.note, c.verdict)]
            for c in report.comparisons
        ]  # fmt: skip
        lines += _md_table(["dataset", "A", "B", "seeds", "F1 A", "F1 B", "Δ", "p", "A vs B"], rows, right_from=4)
        lines.append("")
    for study in report.cases:
        lines += _case_md(study)
    lines += ["## Runs not counted", ""]
    if report.problems:
        rows = [[_md(run.state.value), f"`{run.path}`", _md(run.note)] for run in report.problems]
        lines += _md_table(["state", "run", "note"], rows, right_from=3)
    else:
        lines.append("Every run found under the runs folder is counted.")
    if report.elsewhere:
        lines += ["", _md(_elsewhere(report))]
    return "\n".join(lines) + "\n"


def _case_md(study: CaseStudy) -> list[str]:
    title = f"## Case study: {_md(study.dataset)}" + (f", seed {study.seed}" if study.seed is not None else "")
    lines = [title, ""]
    if not study.cases:
        return [*lines, _md(f"No case: {study.note or 'the systems agree on every post'}."), ""]
    for case in study.cases:
        lines += [f"**Post {case.index}** (image `{case.image}`): {_md(' '.join(case.words))}", ""]
        rows = [["gold", _md(show_entities(case.gold, case.words))]]
        rows += [
            [_md(f"{RIGHT if predicted == case.gold else WRONG} {label}"), _md(show_entities(predicted, case.words))]
            for label, predicted in case.predicted.items()
        ]
        lines += [*_md_table(["", "entities"], rows, right_from=2), ""]
    if study.note:
        lines += [f"*{_md(study.note)}*", ""]
    return lines


# ---- LaTeX ---------------------------------------------------------------------------------

_LATEX_SPECIAL = {c: f"\\{c}" for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                                     "\\": r"\textbackslash{}"}  # fmt: skip
_LATEX_SYMBOLS = {" ± ": r"$\pm$", "±": r"$\pm$", " †": r"$^\dagger$", " ‡": r"$^\ddagger$", " §": r"$^\S$",
                  "–": "--", "Δ": r"$\Delta$"}  # fmt: skip


def latex_escape(text: str) -> str:
    """``text`` for LaTeX: special characters escaped, the report's symbols as math."""
    out = "".join(_LATEX_SPECIAL.get(c, c) for c in text)
    for symbol, command in _LATEX_SYMBOLS.items():
        out = out.replace(symbol, command)
    return out


def latex(table: ReportTable) -> str:
    """A booktabs ``tabular`` of the table (needs ``\\usepackage{booktabs}``); footnotes as comments."""
    widths = [len(table.columns[d]) for d in table.datasets]
    lines = [f"% {table.title}. Generated by `umt report`; needs \\usepackage{{booktabs}}."]
    lines += [f"% {i}. {note}" for i, note in enumerate(table.footnotes, 1)]
    lines += [r"\begin{tabular}{ll" + "".join(" " + "r" * w for w in widths) + "}", r"\toprule"]
    spans, start = [], 3
    for dataset, width in zip(table.datasets, widths, strict=True):
        spans.append((dataset, start, start + width - 1))
        start += width
    blocks = (rf"\multicolumn{{{b - a + 1}}}{{c}}{{{latex_escape(d)}}}" for d, a, b in spans)
    lines.append(" & ".join(["", "", *blocks]) + r" \\")
    lines.append(" ".join(rf"\cmidrule(lr){{{a}-{b}}}" for _, a, b in spans))
    header = ["System", "Backbone", *(c for d in table.datasets for c in table.columns[d])]
    lines += [" & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    total = 2 + sum(widths)
    for index, (title, rows) in enumerate(table.sections):
        if index:
            lines.append(r"\midrule")
        if title:
            lines.append(rf"\multicolumn{{{total}}}{{l}}{{\textit{{{latex_escape(title)}}}}} \\")
        for row in rows:
            cells = [row.label, row.backbone, *(c for d in table.datasets for c in row.cells[d])]
            shown = [latex_escape(c) for c in cells]
            if row.quoted:
                shown = [rf"\textit{{{c}}}" if c else c for c in shown]
            lines.append(" & ".join(shown) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


# ---- CSV -----------------------------------------------------------------------------------


def _csv_rows(report: Report) -> Iterator[dict]:
    spec = report.spec
    versus = {(c.dataset, c.a): c for c in report.comparisons if c.b == spec.reference_for(c.a)}
    for section, systems in spec.sections:
        for system in systems:
            for dataset in report.table.datasets:
                identity = _identity(report, section, system, dataset)
                group, scores = report.group(dataset, system), report.scores.get((dataset, system))
                choice = report.choice(dataset, system)
                if scores is not None:
                    test = versus.get((dataset, system))
                    reference = report.scores.get((dataset, spec.reference_for(system)))
                    yield identity | {
                        "source": "ours", "n": scores.f1.n, "seeds": _seeds(scores.seeds),
                        "precision": _percent(scores.precision.mean), "precision_std": _percent(scores.precision.std),
                        "recall": _percent(scores.recall.mean), "recall_std": _percent(scores.recall.std),
                        "f1": _percent(scores.f1.mean), "f1_std": _percent(scores.f1.std),
                        **_delta_f1(spec, scores.f1.mean, reference and reference.f1.mean),
                        **{f"f1_{t}": _percent(s.mean) for t, s in scores.per_type.items()},
                        **{f"f1_{t}_std": _percent(s.std) for t, s in scores.per_type.items()},
                        f"p_vs_{spec.reference.label}": "" if test is None or test.p is None else test.p,
                        "settings": choice.describe(group) if choice is not None else "",
                        "runs": ";".join(str(r.path) for r in group.runs),
                    }  # fmt: skip
                quoted = quoted_scores(spec, dataset, system)
                if quoted is not None and spec.quotes(system):
                    reference = quoted_scores(spec, dataset, spec.reference)
                    yield identity | {
                        "source": "paper", "backbone": paper_backbone_cell(system),
                        "precision": _percent(quoted.precision), "recall": _percent(quoted.recall),
                        "f1": _percent(quoted.f1), **_delta_f1(spec, quoted.f1, reference and reference.f1),
                        **{f"f1_{t}": _percent(v) for t, v in quoted.per_type.items()},
                    }  # fmt: skip


def _delta_f1(spec: TableSpec, f1: float, reference_f1: float | None) -> dict:
    """Table 3's ``delta_f1`` column: F1 minus the full model's, in percent (empty without it)."""
    if spec.per_type:
        return {}
    return {"delta_f1": "" if reference_f1 is None else _percent(f1 - reference_f1)}


def _identity(report: Report, section: str, system: System, dataset: str) -> dict:
    """Which row a CSV line is: ``system`` and ``backbone`` as the tables show them (the pair tells
    two backbones' rows of one model apart), then the model and ``--no-images``."""
    return {
        "table": report.table.name, "section": section, "system": system.name, "backbone": backbone_cell(system),
        "model": system.model, "no_images": system.no_images, "dataset": dataset,
    }  # fmt: skip


def csv_text(report: Report) -> str:
    """One row per (system, dataset) with our numbers, and one per paper row with ``--paper``;
    scores in percent (four decimals), stds empty for a single seed."""
    rows = list(_csv_rows(report))
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
