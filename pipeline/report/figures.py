"""``umt report --figures``: the report's pictures, as PNG files (matplotlib, imported only here).

Per dataset:

- ``<dataset>_vs_<reference>.png``: the paper's Figures 3 and 4. For each text+image system, the
  gold test entities the reference system (bert-crf; the full umt for the ablations) gets wrong
  and the system gets right, and the reverse, by entity type. An entity counts as right only
  when predicted with its exact span and type (the paper's strict match); spurious predicted
  entities are not counted. Counts are the mean per seed over the seeds the system shares with
  the reference (the legend gives their number).
- ``<dataset>_f1_by_type.png``: test F1 per entity type and overall per system, error bars one
  sample std over seeds (none for a single seed).
- ``<dataset>_learning_curves.png``: dev F1 and training loss per epoch, one line per run,
  from each run's ``log.jsonl``.

Figures are drawn on ``matplotlib.figure.Figure`` objects (the Agg canvas, no pyplot and no
global backend state) and written atomically.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from umt.cache.durable import atomic_write_bytes
from umt.pipeline.errors import ConfigError
from umt.pipeline.report.aggregate import ordered_types
from umt.pipeline.report.build import Report
from umt.pipeline.report.predictions import PredictionStore
from umt.pipeline.report.runs import Group, System
from umt.pipeline.run_dir import RunDir

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 130
OVERALL = "overall"


def _color(report: Report, system: System) -> tuple:
    """One colour per system, the same in every figure of the report: the ten distinct tab10 colours
    go to the text+image systems first (they are in every figure), then the lighter tab20 shades."""
    from matplotlib import colormaps

    ranked = sorted(report.spec.systems, key=lambda s: not s.multimodal)
    palette = (*colormaps["tab10"].colors, *colormaps["tab20"].colors[1::2])
    return palette[ranked.index(system) % len(palette)]


def _save(figure: Figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None
    return path


def _grouped_bars(
    axes: Axes, categories: Sequence[str], series: Sequence[tuple[str, tuple, Sequence[float], Sequence[float] | None]],
    value_labels: bool,
) -> None:  # fmt: skip
    """Bars per category, one per series (label, colour, values, error bars or None)."""
    x = np.arange(len(categories))
    width = 0.8 / max(1, len(series))
    for i, (label, color, values, errors) in enumerate(series):
        bars = axes.bar(x - 0.4 + width * (i + 0.5), values, width, label=label, color=color, yerr=errors,
                        capsize=2 if errors is not None else 0, error_kw={"elinewidth": 0.8})  # fmt: skip
        if value_labels:  # upright numbers collide as soon as bars are narrow
            axes.bar_label(bars, fmt="%.3g", fontsize=6, padding=2, rotation=90)
    if value_labels:
        axes.margins(y=0.12)  # room above the tallest bar for its label
    axes.set_xticks(x, categories)
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)


@dataclass(frozen=True)
class Changes:
    """Gold entities one system gets right where the reference is wrong (``fixed``) and the reverse
    (``broken``), per type, as the mean per seed over ``seeds`` (those both systems have)."""

    seeds: tuple[int, ...]
    fixed: dict[str, float]
    broken: dict[str, float]


def entity_changes(reference: Group, other: Group, store: PredictionStore) -> Changes:
    """Strict match: a gold entity is right when predicted with exactly its span and type. A
    ConfigError when a predictions file cannot be read or the two runs' test posts differ."""
    seeds = tuple(s for s in reference.seeds if s in other.seeds)
    fixed: dict[str, float] = {}
    broken: dict[str, float] = {}
    for seed in seeds:
        base, system = store.load(reference.run_for(seed)), store.load(other.run_for(seed))
        reason = base.difference(system)
        if reason is not None:
            raise ConfigError(f"{other.system.label} on {other.dataset}: {reason}")
        for gold, base_pred, pred in zip(base.gold_entities, base.pred_entities, system.pred_entities, strict=True):
            for entity in gold:
                was, now = entity in base_pred, entity in pred
                if now != was:
                    counts = fixed if now else broken
                    counts[entity[0]] = counts.get(entity[0], 0.0) + 1 / len(seeds)
    return Changes(seeds, fixed, broken)


def changes_figure(report: Report, dataset: str, folder: Path) -> Path | None:
    """The paper's Figures 3 and 4 for ``dataset``; None without the reference or another system."""
    from matplotlib.figure import Figure

    reference_system = report.spec.reference_in(g.system for g in report.groups if g.dataset == dataset)
    reference = report.group(dataset, reference_system)
    if reference is None:
        return None
    counted = []
    for system in report.spec.systems:
        group = report.group(dataset, system)
        if group is None or system == reference_system or not system.multimodal:
            continue
        try:
            changes = entity_changes(reference, group, report.store)
        except ConfigError:  # unreadable predictions or other test posts: the report lists the comparison
            continue
        if changes.seeds:
            counted.append((group, changes))
    if not counted:
        return None
    types = list(report.scores[(dataset, reference.system)].per_type)  # the types with gold entities
    panel = max(4.5, 0.18 * len(types) * len(counted) + 1.5)
    figure = Figure(figsize=(2 * panel + 3, 4.2), layout="constrained")
    panels = figure.subplots(1, 2, sharey=True)
    ref = reference_system.label
    titles = (f"wrong by {ref}, right by the system (cf. Fig. 3)", f"right by {ref}, wrong by the system (cf. Fig. 4)")
    for axes, which, title in zip(panels, ("fixed", "broken"), titles, strict=True):
        series = [
            (f"{g.system.label} ({len(c.seeds)} seed{'s' if len(c.seeds) > 1 else ''})", _color(report, g.system),
             [getattr(c, which).get(t, 0.0) for t in types], None)
            for g, c in counted
        ]  # fmt: skip
        _grouped_bars(axes, types, series, value_labels=len(series) <= 6)
        axes.set_title(title, fontsize=10)
        axes.set_xlabel("gold entity type")
    panels[0].set_ylabel("test entities (mean per seed)")
    panels[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.suptitle(f"{dataset}: entities (exact span and type) changed against {ref}", fontsize=11)
    return _save(figure, folder / f"{dataset}_vs_{reference_system.model}.png")


def f1_figure(report: Report, dataset: str, folder: Path) -> Path | None:
    """Test F1 per type and overall, per system, with seed std error bars."""
    from matplotlib.figure import Figure

    shown = [(s, report.scores[(dataset, s)]) for s in report.spec.systems if (dataset, s) in report.scores]
    if not shown:
        return None
    types = ordered_types({t for _, scores in shown for t in scores.per_type})
    categories = [*types, OVERALL]
    series = []
    for system, scores in shown:
        stats = [*(scores.per_type.get(t) for t in types), scores.f1]
        values = [100 * s.mean if s is not None else 0.0 for s in stats]
        errors = [100 * s.std if s is not None and s.std is not None else 0.0 for s in stats]
        label = f"{system.label} (n={scores.f1.n})"
        series.append((label, _color(report, system), values, errors if any(errors) else None))
    figure = Figure(figsize=(max(8.0, 0.22 * len(categories) * len(shown) + 3), 4.5), layout="constrained")
    axes = figure.subplots()
    _grouped_bars(axes, categories, series, value_labels=False)
    axes.set_ylim(0, 100)
    axes.set_ylabel("test F1 (%)")
    axes.set_title(f"{dataset}: test F1 by entity type (mean over seeds, error bars: sample std)", fontsize=11)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return _save(figure, folder / f"{dataset}_f1_by_type.png")


def _curve(run_path: Path) -> tuple[list[int], list[float], list[float]]:
    """Epochs, dev F1 (%) and training loss from a run's log (a resumed epoch counted once, last wins)."""
    by_epoch = {}
    for event in RunDir(run_path).events():
        if event.get("event") == "epoch" and isinstance(event.get("epoch"), int):
            by_epoch[event["epoch"]] = event
    epochs = sorted(by_epoch)
    dev = [by_epoch[e].get("dev") for e in epochs]
    dev_f1 = [100 * _number(d.get("f1") if isinstance(d, dict) else None) for d in dev]
    loss = [_number(by_epoch[e].get("train_loss")) for e in epochs]
    return epochs, dev_f1, loss


def _number(value) -> float:
    """A logged value as a float; NaN (a gap in the curve) for anything else a damaged log holds."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def curves_figure(report: Report, dataset: str, folder: Path) -> Path | None:
    """Dev F1 and training loss per epoch of every run of ``dataset`` in the table."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    groups = [g for s in report.spec.systems for g in [report.group(dataset, s)] if g is not None]
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    dev_axes, loss_axes = figure.subplots(1, 2)
    drawn = False
    for group in groups:
        for index, run in enumerate(group.runs):
            try:
                epochs, dev, loss = _curve(run.path)
            except ConfigError:
                continue  # a damaged log: the run still counts in the tables
            if not epochs:
                continue
            style = {"color": _color(report, group.system), "linewidth": 1.2, "alpha": 0.85, "marker": "o",
                     "markersize": 2.5, "label": group.system.label if index == 0 else None}  # fmt: skip
            dev_axes.plot(epochs, dev, **style)
            loss_axes.plot(epochs, loss, **style)
            drawn = True
    if not drawn:
        return None
    dev_axes.set(xlabel="epoch", ylabel="dev F1 (%)", title="dev F1 (model selection)")
    loss_axes.set(xlabel="epoch", ylabel="training loss (log scale)", title="training loss", yscale="log")
    plain = LogFormatter(labelOnlyBase=False)  # "6", "0.3" rather than 6x10^0
    loss_axes.yaxis.set_major_formatter(plain)
    loss_axes.yaxis.set_minor_formatter(plain)
    for axes in (dev_axes, loss_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    loss_axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.suptitle(f"{dataset}: learning curves, one line per run (seed)", fontsize=11)
    return _save(figure, folder / f"{dataset}_learning_curves.png")


def write_figures(report: Report, folder: Path) -> list[Path]:
    """Every figure of the report under ``folder`` (created); the paths written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create {folder}: {e.strerror}") from None
    written = []
    for dataset in report.table.datasets:
        for draw in (changes_figure, f1_figure, curves_figure):
            path = draw(report, dataset, folder)
            if path is not None:
                written.append(path)
    return written
