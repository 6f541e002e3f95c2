"""What ``umt sweep`` searches over: a grid of values, or ranges for a TPE search.

Both are written as space-separated ``name=...`` items naming settings
(:mod:`umt.pipeline.settings`):

* a grid, ``--grid "lr=1e-5,1e-4 dropout=0.1,0.5 esd_weight=0.1,0.9"``: every combination of the
  listed values is one trial (the paper's section 3.1 search);
* a search space, ``--space "lr=1e-5:1e-4:log epochs=2:8 dropout=0.1,0.3,0.5"``: ``low:high`` is
  a range (whole numbers for an integer setting, both ends included; ``:log`` samples it on a
  log scale), a comma list is a choice among its values; TPE proposes ``--trials`` of them.

The process, the seed and the run's own bookkeeping (``device``, ``num_workers``,
``eval_batch_size``, ``compile``, ``seed``) are not hyper-parameters and cannot be searched.
Optuna is imported only when a trial is sampled.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from umt.pipeline.errors import ConfigError
from umt.pipeline.settings import GROUPS, KINDS, parse_value, setting_name
from umt.pipeline.train_config import RUNTIME_FIELDS

if TYPE_CHECKING:
    import optuna

#: Settings a sweep may not vary.
NOT_SEARCHED = (*RUNTIME_FIELDS, "seed")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a list of ``choices``, or a range ``low``..``high`` (``log`` scale)."""

    name: str
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def suggest(self, trial: optuna.Trial) -> Any:
        if not self.is_range:
            return trial.suggest_categorical(self.name, list(self.choices))
        if KINDS[self.name] == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def describe(self) -> str:
        if self.is_range:
            return f"{self.name}={_text(self.low)}:{_text(self.high)}{':log' if self.log else ''}"
        return f"{self.name}={','.join(_text(v) for v in self.choices)}"


@dataclass(frozen=True)
class SearchSpace:
    """The searched settings, in the order the user wrote them; ``grid`` when every one is a list."""

    dimensions: tuple[Dimension, ...]
    option: str  # "--grid" or "--space": names the option in errors

    @property
    def is_grid(self) -> bool:
        return self.option == "--grid"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def grid(self) -> dict[str, list[Any]]:
        """Each setting's values, for Optuna's grid sampler."""
        return {d.name: list(d.choices) for d in self.dimensions}

    def points(self) -> list[dict[str, Any]]:
        """Every combination of the grid, in order (the first setting varies slowest)."""
        names = self.names
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.grid().values())]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def describe(self) -> str:
        return " ".join(d.describe() for d in self.dimensions)

    def by_group(self, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """``{"model": {...}, "train": {...}}``: which config each value belongs to."""
        out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
        for name, value in values.items():
            out[GROUPS[name]][name] = value
        return out


def parse_space(text: str, option: str) -> SearchSpace:
    """``text`` of ``--grid`` (lists only) or ``--space`` (ranges and lists) as a :class:`SearchSpace`."""
    dimensions, seen = [], set()
    for item in text.split():
        raw_name, sep, values = item.partition("=")
        if not sep or not values:
            raise ConfigError(f"{option} {item!r}: expected name=values, e.g. lr=1e-5,1e-4")
        name = setting_name(raw_name, f"{option} {item!r}")
        if name in NOT_SEARCHED:
            raise ConfigError(f"{option} {item!r}: {name} is not a hyper-parameter and cannot be searched")
        if name in seen:
            raise ConfigError(f"{option} {item!r}: {name} is given twice")
        seen.add(name)
        dimensions.append(_dimension(name, values, f"{option} {item!r}", ranges=option == "--space"))
    if not dimensions:
        raise ConfigError(f"{option}: give at least one setting, e.g. lr=1e-5,1e-4")
    return SearchSpace(tuple(dimensions), option)


def _dimension(name: str, values: str, what: str, ranges: bool) -> Dimension:
    if ":" not in values:
        choices = tuple(parse_value(name, v, what) for v in values.split(",") if v.strip())
        if len(set(choices)) != len(choices):
            raise ConfigError(f"{what}: a value is repeated")
        return Dimension(name, choices=choices)
    if not ranges:
        raise ConfigError(f"{what}: a grid lists values (a,b,c); ranges (low:high) are for --space with --trials")
    if KINDS[name] not in ("int", "float"):
        raise ConfigError(f"{what}: {name} is not a number; list its values instead (a,b)")
    parts = values.split(":")
    log = parts[-1].strip() == "log"
    if log:
        parts = parts[:-1]
    if len(parts) != 2:
        raise ConfigError(f"{what}: expected low:high or low:high:log")
    low, high = (float(parse_value(name, p, what)) for p in parts)
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise ConfigError(f"{what}: expected low < high")
    if log and low <= 0:
        raise ConfigError(f"{what}: a log range must start above 0")
    return Dimension(name, low=low, high=high, log=log)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)
