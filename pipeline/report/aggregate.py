"""A group's seeds summarised: mean and sample standard deviation of the test scores.

Read from each run's ``metrics.json`` (seqeval's default scheme, the scores runs are selected
and reported on), so the numbers are exactly those ``umt train`` printed for each seed.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from umt.pipeline.metrics import pct
from umt.pipeline.report.paper import PAPER_TYPES
from umt.pipeline.report.runs import Group

NO_VALUE = "–"  # a cell with nothing to show


@dataclass(frozen=True)
class Stat:
    """Mean and sample std (n - 1; None for one value) of ``n`` scores, as fractions."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        if not values:
            raise ValueError("no values to summarise")
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(statistics.fmean(values), std, len(values))

    def show(self) -> str:
        """``"73.41 ± 0.52"`` in percent; ``"73.41"`` for one seed."""
        return f"{pct(self.mean)} ± {pct(self.std)}" if self.std is not None else pct(self.mean)


@dataclass(frozen=True)
class Scores:
    """A group's test scores over its seeds: overall P/R/F1 and F1 per entity type."""

    seeds: tuple[int, ...]
    precision: Stat
    recall: Stat
    f1: Stat
    per_type: dict[str, Stat]


def ordered_types(types: Iterable[str]) -> list[str]:
    """Entity types in the paper's order (PER, LOC, ORG, MISC), any others after them by name."""
    types = set(types)
    return [t for t in PAPER_TYPES if t in types] + sorted(types - set(PAPER_TYPES))


def _type_f1(test: dict, name: str) -> float:
    """A type's test F1; 0 for a seed whose report lacks the type (no gold and no predicted entity)."""
    row = test["per_type"].get(name)
    return row["f1"] if row is not None else 0.0


def aggregate(group: Group) -> Scores:
    """Mean ± std over the group's seeds. The types are those with gold entities in the test set
    (a type only ever predicted has no F1 worth a column)."""
    tests = [run.test_scores for run in group.runs]
    types = ordered_types(t for test in tests for t, row in test["per_type"].items() if row["support"] > 0)
    return Scores(
        seeds=group.seeds,
        precision=Stat.of([test["precision"] for test in tests]),
        recall=Stat.of([test["recall"] for test in tests]),
        f1=Stat.of([test["f1"] for test in tests]),
        per_type={t: Stat.of([_type_f1(test, t) for test in tests]) for t in types},
    )
