"""From a folder of runs to a :class:`Report`: everything ``umt report`` shows and writes.

collect (``runs``) -> one configuration per dataset and system (a model with one image backbone),
one run per seed (``choose``)
-> mean ± std per group (``aggregate``) -> significance of the table's comparisons
(``significance``) -> the display table (``layout``) -> the case study (``cases``). The
renderers (``render``, ``figures``) only read the Report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from umt.pipeline.report.aggregate import Scores, Stat, aggregate
from umt.pipeline.report.arrange import ReportTable, TableSpec, build_table, table_spec
from umt.pipeline.report.cases import CaseStudy, case_study, case_systems
from umt.pipeline.report.choose import Choice, Pick, dev_f1, select
from umt.pipeline.report.predictions import PredictionStore
from umt.pipeline.report.runs import Group, Run, RunState, System, collect_runs, missing_runs
from umt.pipeline.report.significance import DEFAULT_RESAMPLES, RNG_SEED, Comparison, compare


@dataclass
class Report:
    """One table of results and everything behind it."""

    root: Path
    spec: TableSpec
    table: ReportTable
    runs: list[Run]  # every run found under root, then what the table misses
    groups: list[Group]  # the finished runs of the table's systems: each row's chosen configuration
    elsewhere: list[Group]  # finished runs of systems this table does not show (the other table's)
    scores: dict[tuple[str, System], Scores]
    comparisons: list[Comparison]
    cases: list[CaseStudy]
    store: PredictionStore = field(repr=False)
    #: The rows with more than one configuration (or some left out by ``--where``): what each took.
    choices: list[Choice]

    @property
    def problems(self) -> list[Run]:
        """The runs that are not counted: unfinished, damaged, duplicated or missing."""
        return [run for run in self.runs if run.state is not RunState.FINISHED]

    def group(self, dataset: str, system: System) -> Group | None:
        return next((g for g in self.groups if g.dataset == dataset and g.system == system), None)

    def choice(self, dataset: str, system: System) -> Choice | None:
        return next((c for c in self.choices if c.dataset == dataset and c.system == system), None)

    def to_dict(self) -> dict:
        """The report as JSON-ready data: the table's cells, the scores as fractions, the tests."""

        def stat(s: Stat) -> dict:
            return {"mean": s.mean, "std": s.std, "n": s.n}

        return {
            "runs_root": str(self.root),
            "table": {
                "name": self.table.name, "title": self.table.title, "datasets": list(self.table.datasets),
                "columns": {d: list(c) for d, c in self.table.columns.items()},
                "sections": [
                    {"title": title, "rows": [{"label": r.label, "backbone": r.backbone, "quoted": r.quoted,
                                               "cells": dict(r.cells)} for r in rows]}
                    for title, rows in self.table.sections
                ],
                "footnotes": list(self.table.footnotes),
            },
            "groups": [
                {
                    "dataset": g.dataset, "system": g.system.label, "model": g.system.model,
                    "no_images": g.system.no_images, "backbone": g.system.backbone, "seeds": list(g.seeds),
                    "runs": [str(r.path) for r in g.runs],
                    "settings": dict(g.settings),
                    "precision": stat(s.precision), "recall": stat(s.recall), "f1": stat(s.f1),
                    "per_type_f1": {t: stat(v) for t, v in s.per_type.items()},
                }
                for g in self.groups
                for s in [self.scores[(g.dataset, g.system)]]
            ],
            "configurations": [
                {"dataset": c.dataset, "system": c.system.label, "pick": c.pick.by, "where": dict(c.pick.where),
                 "differing": list(c.differing()),
                 "configurations": [{"settings": {k: g.settings[k] for k in c.differing()}, "status": status,
                                     "seeds": list(g.seeds), "dev_f1": dev_f1(g), "runs": [str(r.path) for r in g.runs]}
                                    for g, status in c.configurations]}
                for c in self.choices
            ],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "cases": [c.to_dict() for c in self.cases],
            "problems": [
                {"path": str(r.path), "state": r.state.value, "note": r.note,
                 "dataset": r.dataset, "system": r.system.label if r.system else None, "seed": r.seed}
                for r in self.problems
            ],
        }  # fmt: skip


def build_report(
    root: Path, *, ablations: bool = False, paper: bool = False, cases: int = 5,
    resamples: int = DEFAULT_RESAMPLES, rng_seed: int = RNG_SEED, pick: Pick = Pick(),
) -> Report:  # fmt: skip
    """Table 3 (``ablations``) or Table 2 of the runs under ``root``, one configuration per row chosen
    by ``pick``, with the paper's rows (``paper``), ``cases`` case-study posts per dataset and
    significance tests of ``resamples`` swap patterns. Reads only what runs wrote (JSON, CoNLL,
    logs); loads no model."""
    selection = select(collect_runs(root), pick)
    runs, every_group = selection.runs, selection.groups
    spec = table_spec(every_group, ablations, paper)
    groups = [g for g in every_group if g.system in spec.systems]
    choices = [c for c in selection.choices if c.contested and (c.system in spec.systems or c.chosen is None)]
    runs = runs + missing_runs(runs, groups, spec.expected, Path(root))
    scores = {(g.dataset, g.system): aggregate(g) for g in groups}
    store = PredictionStore()
    by_key = {(g.dataset, g.system): g for g in groups}
    comparisons = [
        compare(by_key[(dataset, a)], by_key[(dataset, b)], store, resamples, rng_seed)
        for dataset in sorted({g.dataset for g in groups})
        for a, b in spec.pairs()
        if (dataset, a) in by_key and (dataset, b) in by_key
    ]
    table = build_table(spec, scores, comparisons, resamples, rng_seed, choices)
    studies = []
    for dataset in table.datasets:
        if cases <= 0 or not any(g.dataset == dataset for g in groups):
            continue
        reference = spec.reference_in(s for d, s in by_key if d == dataset)
        others = [by_key[(dataset, s)] for s in case_systems(spec.systems, reference) if (dataset, s) in by_key]
        studies.append(case_study(dataset, by_key.get((dataset, reference)), others, store, cases))
    elsewhere = [g for g in every_group if g.system not in spec.systems]
    return Report(Path(root), spec, table, runs, groups, elsewhere, scores, comparisons, studies, store, choices)
