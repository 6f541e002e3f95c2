"""The paper's tables as data: which systems are rows, which comparisons mark them, what the cells say.

Table 2 (``umt report``): one row per system in the registry's order, text-only rows then
text+image rows, each beside its image backbone (a model that ran with two backbones has two
rows, the paper's backbone first; a dash where a row reads no images), a column block per
dataset: F1 per entity type, then P, R, F1 overall and the number of seeds. Rows are the systems
that ran, and with ``--paper`` those the paper quotes when a dataset of the runs is one of the
paper's. Table 3 (``umt report --ablations``): the full UMT and each ablation, P, R, F1 and the
F1 difference to the full model. A :class:`ReportTable` holds display strings only (in percent,
``mean ± std``); every renderer (terminal, Markdown, LaTeX) draws the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from umt.pipeline.metrics import pct
from umt.pipeline.models.catalog import model_names
from umt.pipeline.report.aggregate import NO_VALUE, Scores, ordered_types
from umt.pipeline.report.choose import Choice
from umt.pipeline.report.paper import (
    ABLATIONS,
    DATASETS,
    FULL_MODEL,
    PAPER_BACKBONE,
    PAPER_TYPES,
    PaperScores,
    paper_models,
    paper_scores,
)
from umt.pipeline.report.runs import Group, System
from umt.pipeline.report.significance import ALPHA, Comparison

BASELINE = "bert-crf"  # Table 2's markers: each multimodal system against the text-only BERT-CRF
BETTER, WORSE, PICKED = "†", "‡", "§"  # PICKED: a row's configuration chosen among several
DASH = NO_VALUE


@dataclass(frozen=True)
class TableSpec:
    """What one table shows: its sections of systems, the system its markers compare against,
    and whether it has per-type columns (Table 2) or a ΔF1 column (Table 3)."""

    number: int  # the paper's table number
    sections: tuple[tuple[str, tuple[System, ...]], ...]
    reference: System
    per_type: bool
    paper: bool = False  # the paper's own rows beside ours
    expected: tuple[System, ...] = ()  # every system the table is made of (a missing one is reported)

    @property
    def systems(self) -> tuple[System, ...]:
        return tuple(system for _, members in self.sections for system in members)

    def reference_for(self, system: System) -> System:
        """What ``system`` is compared with: bert-crf in Table 2; in Table 3 the full umt trained
        as ``system`` was (with the same backbone's images, or with every image absent)."""
        if self.number == 3:
            return System(self.reference.model, system.no_images, system.backbone)
        return self.reference

    def reference_in(self, present: Iterable[System]) -> System:
        """The reference a dataset's case study and figures use: the first of the reference model's
        rows that ran (in Table 3 umt with images, the paper's backbone first, else umt trained
        without images), or the table's own reference when none did."""
        present = set(present)
        ran = (s for s in self.systems if s.model == self.reference.model and s in present)
        return next(ran, self.reference)

    def pairs(self) -> list[tuple[System, System]]:
        """The comparisons the table reports: Table 2, each multimodal system against bert-crf and
        each full umt row with images against every other row that reads the same backbone's images
        or none (against another backbone's rows the difference would be the backbone's as much as
        the model's); Table 3, each row against the full umt."""
        if self.number == 3:
            return [(s, self.reference_for(s)) for s in self.systems if s != self.reference_for(s)]
        pairs = [(s, self.reference) for s in self.systems if s.multimodal]
        for umt in (s for s in self.systems if s.model == FULL_MODEL and not s.no_images):
            others = (s for s in self.systems if s not in (umt, self.reference) and s.backbone in (None, umt.backbone))
            pairs += [(umt, s) for s in others]
        return pairs

    def quotes(self, system: System) -> bool:
        """Whether the paper's row of ``system``'s model (with ``paper``) follows ``system``'s: only the
        model's first row with images does (the paper's backbone's, when that one ran), so a model that
        ran with two backbones has the paper's numbers once."""
        with_images = (s for s in self.systems if s.model == system.model and not s.no_images)
        return not system.no_images and next(with_images, None) == system


def _backbone_order(system: System) -> tuple[bool, str]:
    """Rows of one model: the paper's backbone first, then the others by name."""
    return system.backbone != PAPER_BACKBONE, system.backbone or ""


def _rows_of(models: Sequence[str], present: set[System], quoted: set[str]) -> tuple[System, ...]:
    """Each model's rows with images, one per backbone that ran (or one without a backbone when
    none ran and the paper has it), then its ``--no-images`` row if it ran."""
    rows: list[System] = []
    for model in models:
        with_images = sorted((s for s in present if s.model == model and not s.no_images), key=_backbone_order)
        if not with_images and model in quoted:
            with_images = [System(model)]
        without = System(model, no_images=True)
        rows += [*with_images, *([without] if without in present else [])]
    return tuple(rows)


def table_spec(groups: Sequence[Group], ablations: bool, paper: bool) -> TableSpec:
    """Table 3 with ``ablations``, else Table 2; rows for the systems that ran (and, with ``paper``,
    those the paper reports), in the registry's order; unregistered models last. The paper's rows
    come only with a dataset of the paper's (or no run at all): a table of other datasets would
    show them empty."""
    present = {g.system for g in groups}
    datasets = {g.dataset for g in groups}
    paper = paper and (not datasets or bool(datasets & set(DATASETS)))
    if ablations:
        models = (FULL_MODEL, *ABLATIONS)
        rows = _rows_of(models, present, set(paper_models(3)) if paper else set())
        expected = _rows_of(models, present, set(models))
        return TableSpec(3, (("", rows),), System(FULL_MODEL), False, paper, expected)
    table2 = [m for m in model_names() if m not in ABLATIONS]
    quoted = set(paper_models(2)) if paper else set()
    sections = (
        ("text", _rows_of([m for m in table2 if not System(m).multimodal], present, quoted)),
        ("text+image", _rows_of([m for m in table2 if System(m).multimodal], present, quoted)),
        ("other (unregistered)", _rows_of(sorted({s.model for s in present} - set(model_names())), present, set())),
    )
    expected = _rows_of(table2, present, set(table2))
    return TableSpec(2, tuple((name, rows) for name, rows in sections if rows), System(BASELINE), True, paper, expected)


@dataclass(frozen=True)
class Row:
    """One row: its label, its image backbone (:data:`DASH` where it reads no images) and, per
    dataset, one display string per column of that dataset's block."""

    label: str
    backbone: str
    cells: Mapping[str, tuple[str, ...]]
    quoted: bool = False  # the paper's numbers, not ours


@dataclass(frozen=True)
class ReportTable:
    name: str  # file stem of its outputs: table2, table3
    title: str
    datasets: tuple[str, ...]
    columns: Mapping[str, tuple[str, ...]]  # per dataset
    sections: tuple[tuple[str, tuple[Row, ...]], ...]
    footnotes: tuple[str, ...]


def quoted_scores(spec: TableSpec, dataset: str, system: System) -> PaperScores | None:
    """The paper's numbers for ``system``'s model in ``spec``'s table (None without ``--paper``, for a
    ``--no-images`` system, or where the paper has none). Whether a row shows them is
    :meth:`TableSpec.quotes`'s."""
    if not spec.paper or system.no_images:
        return None
    return paper_scores(spec.number, system.model, dataset)


def backbone_cell(system: System) -> str:
    """The backbone column of our row of ``system``: its backbone, a dash where it reads no images."""
    return system.backbone if system.backbone is not None else DASH


def paper_backbone_cell(system: System) -> str:
    """The backbone column of the paper's row of ``system``'s model: the paper's for a text+image model."""
    return PAPER_BACKBONE if system.multimodal else DASH


def format_p(p: float) -> str:
    return f"{p:.4f}"


def _signed(x: float) -> str:
    return f"{100 * x:+.2f}"


class _Layout:
    """Builds a ReportTable from a spec, the groups' scores, the comparisons and the rows' choices."""

    def __init__(
        self, spec: TableSpec, scores: Mapping[tuple[str, System], Scores], comparisons: Sequence[Comparison],
        choices: Sequence[Choice],
    ):  # fmt: skip
        self.spec, self.scores = spec, scores
        self.picked = {(c.dataset, c.system) for c in choices if c.chosen is not None}
        self.marks = {(c.dataset, c.a): c for c in comparisons if c.b == spec.reference_for(c.a)}
        ran = sorted({d for d, s in scores if s in spec.systems})
        self.datasets = tuple(ran) if ran else (DATASETS if spec.paper else ())

    def columns(self, dataset: str) -> tuple[str, ...]:
        if not self.spec.per_type:
            return ("P", "R", "F1", "ΔF1", "n")
        shown = [sc for (d, s), sc in self.scores.items() if d == dataset and s in self.spec.systems]
        types = {t for scores in shown for t in scores.per_type}
        if self.spec.paper and dataset in DATASETS:
            types |= set(PAPER_TYPES)
        return (*ordered_types(types), "P", "R", "F1", "n")

    def _marker(self, dataset: str, system: System) -> str:
        comparison = self.marks.get((dataset, system))
        if comparison is None or not comparison.significant:
            return ""
        return f" {BETTER if comparison.verdict == 'better' else WORSE}"

    @staticmethod
    def _delta(f1: float, reference_f1: float | None) -> str:
        return DASH if reference_f1 is None else _signed(f1 - reference_f1)

    def ours(self, dataset: str, system: System) -> tuple[str, ...]:
        columns = self.columns(dataset)
        scores = self.scores.get((dataset, system))
        if scores is None:
            return (*([DASH] * (len(columns) - 1)), "0")
        overall = {"P": scores.precision.show(), "R": scores.recall.show(), "n": str(scores.f1.n)}
        overall["F1"] = scores.f1.show() + self._marker(dataset, system)
        if "ΔF1" in columns:
            reference = self.scores.get((dataset, self.spec.reference_for(system)))
            same = system == self.spec.reference_for(system)
            overall["ΔF1"] = DASH if same else self._delta(scores.f1.mean, reference and reference.f1.mean)
        cells = {**{t: stat.show() for t, stat in scores.per_type.items()}, **overall}
        return tuple(cells.get(c, DASH) for c in columns)

    def quoted(self, dataset: str, system: System) -> PaperScores | None:
        return quoted_scores(self.spec, dataset, system)

    def quoted_cells(self, dataset: str, system: System) -> tuple[str, ...]:
        columns = self.columns(dataset)
        scores = self.quoted(dataset, system)
        if scores is None:
            return tuple([DASH] * len(columns))
        values = {"P": pct(scores.precision), "R": pct(scores.recall), "F1": pct(scores.f1), "n": ""}
        if "ΔF1" in columns:
            reference = self.quoted(dataset, self.spec.reference)
            same = system.model == self.spec.reference.model
            values["ΔF1"] = DASH if same else self._delta(scores.f1, reference and reference.f1)
        values |= {t: pct(f1) for t, f1 in scores.per_type.items()}
        return tuple(values.get(c, DASH) for c in columns)

    def label(self, system: System) -> str:
        """The row's name (its backbone has a column of its own), marked when its configuration was picked."""
        picked = any((d, system) in self.picked for d in self.datasets)
        return system.name + (f" {PICKED}" if picked else "")

    def rows(self, system: System) -> list[Row]:
        rows = [Row(self.label(system), backbone_cell(system), {d: self.ours(d, system) for d in self.datasets})]
        quoted = [q for q in (self.quoted(d, system) for d in self.datasets) if q is not None]
        if quoted and self.spec.quotes(system):
            cells = {d: self.quoted_cells(d, system) for d in self.datasets}
            rows.append(Row(f"paper: {quoted[0].method}", paper_backbone_cell(system), cells, quoted=True))
        return rows


def build_table(
    spec: TableSpec, scores: Mapping[tuple[str, System], Scores], comparisons: Sequence[Comparison],
    resamples: int, rng_seed: int, choices: Sequence[Choice],
) -> ReportTable:  # fmt: skip
    """The display table of ``spec``: our mean ± std per row, the paper's rows with ``paper``, markers
    from ``comparisons`` against the spec's reference and for the rows whose configuration was one of
    several (``choices``), and footnotes that explain every mark."""
    layout = _Layout(spec, scores, comparisons, choices)
    sections = tuple(
        (title, tuple(row for system in members for row in layout.rows(system))) for title, members in spec.sections
    )
    title = {2: "Table 2: text and text+image systems (test set)", 3: "Table 3: ablations of UMT (test set)"}
    return ReportTable(
        f"table{spec.number}", title[spec.number], layout.datasets, {d: layout.columns(d) for d in layout.datasets},
        sections,
        tuple(footnotes(spec, choices, comparisons, resamples, rng_seed, layout.datasets)),
    )  # fmt: skip


def footnotes(
    spec: TableSpec, choices: Sequence[Choice], comparisons: Sequence[Comparison], resamples: int, rng_seed: int,
    datasets: Sequence[str],
) -> list[str]:  # fmt: skip
    """What every number and mark of the table means, with the p-values behind the marks."""
    notes = [
        "Scores in %: entity-level test precision (P), recall (R) and F1 (seqeval, default scheme) of each run's "
        "best dev epoch, mean ± sample std over the n seeds (no ± for a single seed)."
        + (" F1 per entity type in the type columns." if spec.per_type else "")
        + (
            " ΔF1: F1 minus the full model's (umt trained the same way, with the same backbone's images or without "
            "images; for the paper's rows, the paper's UMT)."
            if not spec.per_type
            else ""
        )
        + f" backbone: the frozen image network whose features the row's runs read; {DASH} for a row that reads none."
    ]
    against = (
        f"{spec.reference.label}'s"
        if spec.number == 2
        else f"that of {spec.reference.label} trained the same way (with the same backbone's images, or with every "
        "image absent)"
    )
    marked = [c for c in comparisons if c.b == spec.reference_for(c.a) and c.dataset in datasets]
    if marked:
        tested = "each multimodal system's" if spec.number == 2 else "each ablation's"
        listing = "; ".join(
            f"{d}: " + ", ".join(f"{c.a.label} {format_p(c.p)}" for c in marked if c.dataset == d and c.p is not None)
            for d in datasets
            if any(c.dataset == d and c.p is not None for c in marked)
        )
        notes.append(
            f"{BETTER} / {WORSE}: {tested} F1 is significantly better / worse than {against} (p < {ALPHA}). Test: "
            f"paired approximate randomisation over test posts (each post's two predictions swapped with "
            f"probability 1/2; statistic: difference of micro F1; R = {resamples:,} swap patterns, RNG seed "
            f"{rng_seed}; p = (hits + 1) / (R + 1)); seed s of one system paired with seed s of the other, "
            f"(post, seed) pairs of all common seeds pooled. p-values: {listing or 'none computed'}."
        )
    for c in comparisons:
        if c.p is None and c.dataset in datasets:
            notes.append(f"{c.a.label} vs {c.b.label} on {c.dataset} not compared: {c.note}")
    if spec.paper:
        notes.append(
            f"paper: rows quoted from Yu et al. (2020), Table {spec.number} (single runs as printed there, "
            f"not recomputed; text+image rows with the paper's image backbone, {PAPER_BACKBONE}); their significance "
            "marks (paired t-test) are not reproduced."
        )
    for choice in choices:
        if choice.chosen is not None and choice.system in spec.systems and choice.dataset in datasets:
            notes.append(f"{PICKED} {choice.system.label} on {choice.dataset}: {choice.note()}")
    return notes
