"""Which finished runs a row counts: one system's runs on one dataset grouped by settings, one group chosen.

A hyper-parameter sweep, or a run trained again with other settings, leaves several finished
runs of one system on one dataset. Runs trained with the same settings (every TrainConfig and
ModelConfig value of their config.json but the seed and the runtime fields,
:data:`~umt.pipeline.report.runs.NOT_SETTINGS`) are one *configuration*; a row averages the
seeds of one configuration, never seeds of different ones. Per row the report takes (``--pick``):

- ``dev`` (the default): the configuration with the best mean dev F1 over its seeds (on a tie,
  the one with more seeds, then the one found first). Never test F1: a configuration chosen on
  the test set would report that set's luck as skill.
- ``latest``: the configuration whose newest run finished last (metrics.json's modification time).
- ``first``: the configuration of the first run found, in path order.

``--where setting=value`` admits only the configurations trained with those values, and
``--where backbone=NAME`` only the rows whose images went through that backbone (a row that reads
no images stays: the text-only baselines belong beside any backbone's rows). The backbone is not
a setting of TrainConfig or ModelConfig but of the feature cache a run read, and it is part of
the row (:class:`~umt.pipeline.report.runs.System`), so runs of two backbones are never one
configuration. Two finished runs of one configuration and seed are one too many: the same rule
keeps one (the better dev F1, the later, the first found), and the other is a duplicate, listed
as not counted with the run kept in its place.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from umt.pipeline.errors import ConfigError, did_you_mean
from umt.pipeline.metrics import pct
from umt.pipeline.report.runs import NOT_SETTINGS, Group, Run, RunState, System
from umt.pipeline.settings import parse_value, setting_name
from umt.pipeline.wording import counted

#: The ``--where`` name of the image backbone: no TrainConfig or ModelConfig setting, the row's own.
BACKBONE = "backbone"


def _place(group: Group) -> tuple[str, ...]:
    """Where the group's first run lies in path order (the order runs are found in)."""
    return min(run.path.parts for run in group.runs)


def dev_f1(group: Group) -> float:
    """The group's mean dev F1 over its seeds: what ``--pick dev`` ranks configurations by."""
    return statistics.fmean(run.dev_f1 for run in group.runs)


#: How each ``--pick`` ranks the runs of one seed of a configuration, best first.
RUN_RANKS: dict[str, Callable[[Run], tuple]] = {
    "dev": lambda run: (-run.dev_f1, run.path.parts),
    "latest": lambda run: (-run.finished_at, run.path.parts),
    "first": lambda run: (run.path.parts,),
}
#: How each ``--pick`` ranks the configurations of one row, best first.
GROUP_RANKS: dict[str, Callable[[Group], tuple]] = {
    "dev": lambda group: (-dev_f1(group), -len(group.runs), _place(group)),
    "latest": lambda group: (-max(run.finished_at for run in group.runs), _place(group)),
    "first": lambda group: (_place(group),),
}
PICKS = tuple(RUN_RANKS)


def _condition(text: str) -> tuple[str, Any]:
    """One ``--where setting=value``: the setting's name and the value read as its type, as
    ``--set`` reads them (``umt.pipeline.settings``); ``backbone=NAME``: the name as given."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"--where {text!r}: expected setting=value, e.g. lr=5e-5")
    if name.strip() == BACKBONE:
        if not raw.strip():
            raise ConfigError(f"--where {BACKBONE}=: name the image backbone, e.g. {BACKBONE}=resnet152")
        return BACKBONE, raw.strip()
    key = setting_name(name, f"--where {text.strip()}")
    if key in NOT_SETTINGS:
        raise ConfigError(f"--where {key}: runs that differ only in {', '.join(NOT_SETTINGS)} are one configuration")
    return key, parse_value(key, raw, f"--where {key}={raw.strip()}")


def _holds(group: Group, key: str, value: Any) -> bool:
    """Whether ``group`` was trained with ``value`` of ``key``; a backbone condition holds for a
    group that reads no images, which has no backbone to differ in."""
    if key == BACKBONE:
        return group.system.backbone in (None, value)
    return group.settings.get(key) == value


@dataclass(frozen=True)
class Pick:
    """How a row's configuration and each seed's run are chosen (``by``: one of :data:`PICKS`), and
    the values a configuration must have to be chosen at all (``where``: setting -> value)."""

    by: str = "dev"
    where: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, by: str, where: Sequence[str]) -> Pick:
        """``--pick`` and the ``--where setting=value`` options, checked (a ConfigError names the bad one)."""
        if by not in PICKS:
            raise ConfigError(f"--pick {by!r}{did_you_mean(by, PICKS)}: choose one of {', '.join(PICKS)}")
        conditions: dict[str, Any] = {}
        for text in where:
            key, value = _condition(text)
            if key in conditions:
                raise ConfigError(f"--where {key} is given twice; a run has one value of each setting")
            conditions[key] = value
        return cls(by, conditions)

    def admits(self, group: Group) -> bool:
        return all(_holds(group, key, value) for key, value in self.where.items())

    @property
    def filter(self) -> str:
        """The ``--where`` conditions with their values as read: ``"--where lr=5e-05 --where epochs=8"``."""
        return " ".join(f"--where {key}={value}" for key, value in self.where.items())


#: How a note says the configuration was chosen, per ``--pick``.
HOW_CHOSEN = {"dev": "on mean dev F1", "latest": "as the one trained last (--pick latest)",
              "first": "as the one found first (--pick first)"}  # fmt: skip
CHOSEN, NOT_CHOSEN = "chosen", "not chosen"


@dataclass(frozen=True)
class Choice:
    """The configurations of one system on one dataset and the one its row counts. ``chosen`` is
    None when ``--where`` left every one out; ``others`` are the rest it admits, best first by the
    pick; ``left_out`` those it does not, in path order."""

    dataset: str
    system: System
    pick: Pick
    chosen: Group | None
    others: tuple[Group, ...] = ()
    left_out: tuple[Group, ...] = ()

    @property
    def contested(self) -> bool:
        """Whether there was more than one configuration: only then does the report say which it took."""
        return bool(self.others or self.left_out)

    @property
    def configurations(self) -> list[tuple[Group, str]]:
        """Every configuration with what became of it: chosen, not chosen, or left out by ``--where``."""
        chosen = [(self.chosen, CHOSEN)] if self.chosen is not None else []
        left_out = f"left out by {self.pick.filter}"
        return [*chosen, *((g, NOT_CHOSEN) for g in self.others), *((g, left_out) for g in self.left_out)]

    def differing(self) -> tuple[str, ...]:
        """The settings whose values differ among the configurations, in the settings' order."""
        groups = [group for group, _ in self.configurations]
        return tuple(name for name in groups[0].settings if len({g.settings.get(name) for g in groups}) > 1)

    def describe(self, group: Group) -> str:
        """``group``'s values of the settings that tell the configurations apart: ``"lr=5e-05, epochs=8"``."""
        return ", ".join(f"{name}={group.settings.get(name)}" for name in self.differing())

    def note(self) -> str:
        """What the row took and why: ``"lr=5e-05, epochs=8, chosen on mean dev F1 (72.10) over 3 other
        configurations"``, and how many ``--where`` left out."""
        assert self.chosen is not None, "no configuration was chosen"
        parts = [self.describe(self.chosen)]
        if self.others:
            how = HOW_CHOSEN[self.pick.by] + (f" ({pct(dev_f1(self.chosen))})" if self.pick.by == "dev" else "")
            parts.append(f"chosen {how} over {counted(len(self.others), 'other configuration')}")
        if self.left_out:
            parts.append(f"{counted(len(self.left_out), 'other configuration')} left out by {self.pick.filter}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Selection:
    """The runs as found, each surplus run of a seed marked duplicate, and each row's choice."""

    runs: list[Run]
    choices: list[Choice]

    @property
    def groups(self) -> list[Group]:
        """The chosen configurations: the groups the tables count."""
        return [choice.chosen for choice in self.choices if choice.chosen is not None]


def _why_kept(kept: Run, other: Run, by: str) -> str:
    """Why ``kept`` counts instead of ``other`` (same configuration and seed)."""
    if by == "latest":
        return "which finished later (--pick latest)"
    if by == "first":
        return "which was found first (--pick first)"
    if kept.dev_f1 == other.dev_f1:
        return f"which has the same dev F1 ({pct(kept.dev_f1)}) and was found first"
    return f"which has the better dev F1 ({pct(kept.dev_f1)} vs {pct(other.dev_f1)})"


def _one_per_seed(runs: Sequence[Run], by: str) -> tuple[tuple[Run, ...], list[Run]]:
    """The best run (by ``by``) of each seed of one configuration, in seed order, and the others,
    marked duplicate with the run kept in their place."""
    by_seed: dict[int, list[Run]] = {}
    for run in runs:
        by_seed.setdefault(run.seed, []).append(run)
    kept, duplicates = [], []
    for seed in sorted(by_seed):
        best, *rest = sorted(by_seed[seed], key=RUN_RANKS[by])
        kept.append(best)
        for run in rest:
            note = f"same settings and seed as {best.path}, {_why_kept(best, run, by)}: not counted"
            duplicates.append(replace(run, state=RunState.DUPLICATE, note=note, metrics=None))
    return tuple(kept), duplicates


def _choose(dataset: str, system: System, groups: Sequence[Group], pick: Pick) -> Choice:
    admitted = sorted((g for g in groups if pick.admits(g)), key=GROUP_RANKS[pick.by])
    left_out = tuple(sorted((g for g in groups if not pick.admits(g)), key=_place))
    chosen, *others = admitted or [None]
    return Choice(dataset, system, pick, chosen, tuple(others), left_out)


def select(runs: Sequence[Run], pick: Pick = Pick()) -> Selection:
    """Group the finished ``runs`` into configurations, keep one run per seed of each and choose one
    configuration per dataset and system, all by ``pick``; the choices in (dataset, system) order."""
    configurations: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.state is RunState.FINISHED:
            configurations.setdefault((run.dataset, run.system, tuple(run.settings.items())), []).append(run)
    rows: dict[tuple[str, System], list[Group]] = {}
    surplus: dict[Path, Run] = {}
    for (dataset, system, _), members in configurations.items():
        kept, duplicates = _one_per_seed(members, pick.by)
        rows.setdefault((dataset, system), []).append(Group(dataset, system, kept))
        surplus |= {run.path: run for run in duplicates}
    ordered = sorted(rows.items(), key=lambda item: (item[0][0], item[0][1].label))
    choices = [_choose(dataset, system, groups, pick) for (dataset, system), groups in ordered]
    return Selection([surplus.get(run.path, run) for run in runs], choices)
