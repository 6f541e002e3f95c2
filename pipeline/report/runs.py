"""Run directories under a folder: the state each one is in, and which finished runs are seeds of one row.

``umt train`` writes ``runs/<dataset>/<model>/seed<N>``, but the report does not rely on that
layout: it walks the whole tree, takes every folder holding ``config.json``, ``metrics.json``
or ``last.pt`` as a run, and reads the run's identity (dataset, model, ``--no-images``, seed)
from its ``config.json``. Nothing found is dropped without a word: a run that cannot be
counted carries a :class:`RunState` and a note saying why, for the report's status section.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from umt.pipeline.errors import ConfigError
from umt.pipeline.metrics import PRIMARY
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.run_dir import RunConfig, RunDir

#: A folder holding any of these is a run directory (the first file each stage of a run writes).
MARKERS = (RunDir.CONFIG, RunDir.METRICS, RunDir.LAST)
#: How ``umt train`` names a seed's folder; such a folder without run files is a missing run.
SEED_FOLDER = re.compile(r"seed\d+")
#: The settings the seeds of one row must share (``encoder``: the word vectors for the BiLSTM models).
SETTINGS = ("encoder", "epochs", "lr", "batch_size")


class RunState(str, Enum):
    FINISHED = "finished"  # metrics.json readable: counted in the tables
    RESUMABLE = "resumable"  # last.pt, no metrics.json: interrupted (or still training)
    FAILED = "failed"  # config.json only: stopped before completing an epoch (or in its first)
    HALF_WRITTEN = "half-written"  # a run file missing, damaged or unreadable
    DUPLICATE = "duplicate"  # finished, but another run has the same dataset, system and seed
    MISSING = "missing"  # expected (an empty seed folder, or a system or seed the table lacks)


@dataclass(frozen=True)
class System:
    """One row of a table: a registered model, trained with images or with ``--no-images``."""

    model: str
    no_images: bool = False

    @property
    def label(self) -> str:
        return f"{self.model} (no images)" if self.no_images else self.model

    @property
    def multimodal(self) -> bool:
        """Whether its model is a registered text+image recipe (an unregistered model is not)."""
        return self.model in model_names() and get_recipe(self.model).multimodal


@dataclass(frozen=True)
class Run:
    """One run directory as found. ``dataset``, ``system``, ``seed`` and ``settings`` are None or
    empty where config.json could not be read; ``metrics`` is set only for finished runs."""

    path: Path
    state: RunState
    note: str = ""
    dataset: str | None = None
    system: System | None = None
    seed: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] | None = None

    @property
    def test_scores(self) -> Mapping[str, Any]:
        """The primary scheme's test scores of a finished run (overall and ``per_type``)."""
        assert self.metrics is not None, f"{self.path} is not finished"
        return self.metrics["test"][PRIMARY]


@dataclass(frozen=True)
class Group:
    """The finished runs of one system on one dataset, one per seed, in seed order."""

    dataset: str
    system: System
    runs: tuple[Run, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)

    def run_for(self, seed: int) -> Run | None:
        return next((run for run in self.runs if run.seed == seed), None)

    def mixed_settings(self) -> dict[str, dict[int, Any]]:
        """The settings that matter on which the seeds disagree: name -> {seed: value}."""
        return {
            name: {run.seed: run.settings.get(name) for run in self.runs}
            for name in SETTINGS
            if len({run.settings.get(name) for run in self.runs}) > 1
        }


def _settings(config: RunConfig) -> dict[str, Any]:
    words = config.text.get("kind") == "words"
    return {
        "encoder": config.model_cfg.word_vectors if words else config.model_cfg.encoder,
        "epochs": config.train_cfg.epochs,
        "lr": config.train_cfg.lr,
        "batch_size": config.train_cfg.batch_size,
    }


def _relative(message: str, folder: Path) -> str:
    """A run file's error message with the run's own folder left out (the report shows it beside)."""
    return message.replace(f"{folder}{os.sep}", "")


def _progress(run: RunDir, config: RunConfig) -> str:
    """Where an interrupted run stopped, from its log."""
    try:
        epochs = [e["epoch"] for e in run.events() if e.get("event") == "epoch" and isinstance(e.get("epoch"), int)]
    except ConfigError as e:
        return f"interrupted; {_relative(str(e), run.path)}"
    if not epochs:
        return "interrupted; log.jsonl records no epoch"
    return (
        f"interrupted at epoch {max(epochs)} of {config.train_cfg.epochs} (or still training); "
        "continue it with umt train --resume"
    )


def _check_metrics(metrics: Any, path: Path) -> None:
    """A ConfigError unless ``metrics`` holds the primary scheme's test scores."""
    try:
        test = metrics["test"][PRIMARY]
        for row in (test, *test["per_type"].values()):
            for key in ("precision", "recall", "f1", "support"):
                float(row[key])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path.name}: no {PRIMARY}-scheme test scores ({type(e).__name__}: {e})") from None


def read_run(path: Path) -> Run:
    """The state of the run directory ``path``; a damaged or missing file makes it half-written."""
    run = RunDir(path)
    try:
        config = run.config()
    except ConfigError as e:
        return Run(path, RunState.HALF_WRITTEN, _relative(str(e), path))
    identity = {
        "dataset": config.dataset,
        "system": System(config.model, config.no_images),
        "seed": config.train_cfg.seed,
        "settings": _settings(config),
    }
    if run.finished:
        try:
            metrics = run.metrics()
            _check_metrics(metrics, path / RunDir.METRICS)
        except ConfigError as e:
            return Run(path, RunState.HALF_WRITTEN, _relative(str(e), path), **identity)
        return Run(path, RunState.FINISHED, metrics=metrics, **identity)
    if run.resumable:
        return Run(path, RunState.RESUMABLE, _progress(run, config), **identity)
    note = "no completed epoch: the run failed (or is still in its first epoch)"
    return Run(path, RunState.FAILED, note, **identity)


def collect_runs(root: Path) -> list[Run]:
    """Every run directory under ``root`` (and empty ``seed<N>`` folders, as missing runs), in path
    order; a second finished run of the same dataset, system and seed is marked duplicate."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--runs {root}: no such folder (where `umt train` wrote its run directories)")
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        path = Path(folder)
        if any(name in files for name in MARKERS):
            found.append(read_run(path))
            subfolders.clear()  # a run's own folders (text/) hold no runs
        elif SEED_FOLDER.fullmatch(path.name) and not subfolders:
            found.append(Run(path, RunState.MISSING, "an empty run folder: no config.json, metrics.json or last.pt"))
    return _mark_duplicates(found)


def _mark_duplicates(runs: list[Run]) -> list[Run]:
    first: dict[tuple, Run] = {}
    out = []
    for run in runs:
        key = (run.dataset, run.system, run.seed)
        if run.state is RunState.FINISHED and key in first:
            note = f"same dataset, model and seed as {first[key].path}: not counted"
            run = replace(run, state=RunState.DUPLICATE, note=note, metrics=None)
        elif run.state is RunState.FINISHED:
            first[key] = run
        out.append(run)
    return out


def group_runs(runs: Iterable[Run]) -> list[Group]:
    """The finished runs grouped by (dataset, system), each group in seed order."""
    groups: dict[tuple[str, System], list[Run]] = {}
    for run in runs:
        if run.state is RunState.FINISHED:
            groups.setdefault((run.dataset, run.system), []).append(run)
    return [
        Group(dataset, system, tuple(sorted(members, key=lambda r: r.seed)))
        for (dataset, system), members in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1].label))
    ]


def _expected_path(group: Group, seed: int, root: Path) -> Path:
    """Where ``umt train`` would have put the seed: beside the group's seed folders, or (when they
    are named otherwise) at ``<root>/<dataset>/<model>/seed<N>``."""
    first = group.runs[0].path
    if SEED_FOLDER.fullmatch(first.name):
        return first.parent / f"seed{seed}"
    return root / group.dataset / group.system.model / f"seed{seed}"


def _beside(groups: Sequence[Group], dataset: str, model: str) -> Path | None:
    """The folder ``umt train`` would give ``model``: beside another system's on ``dataset``, when
    the runs there follow its ``<model>/seed<N>`` layout."""
    for group in groups:
        first = group.runs[0].path
        if group.dataset == dataset and SEED_FOLDER.fullmatch(first.name) and first.parent.name == group.system.model:
            return first.parent.parent / model
    return None


def missing_runs(runs: Sequence[Run], groups: Sequence[Group], systems: Sequence[System], root: Path) -> list[Run]:
    """What a table made of ``systems`` lacks on each dataset that has finished runs: a system with no
    finished run there, or a seed that other systems of the table have. Runs already listed in
    ``runs`` (interrupted, failed, empty folders) are not listed again."""
    listed = {(run.dataset, run.system, run.seed) for run in runs} | {run.path for run in runs}
    tried = {(run.dataset, run.system) for run in runs if run.system is not None}
    by_key = {(g.dataset, g.system): g for g in groups}
    missing = []
    for dataset in sorted({g.dataset for g in groups}):
        seeds = sorted({s for g in groups if g.dataset == dataset and g.system in systems for s in g.seeds})
        for system in systems:
            group = by_key.get((dataset, system))
            if group is None:
                if (dataset, system) not in tried:
                    note = f"no run of {system.label} on {dataset}"
                    folder = _beside(groups, dataset, system.model) or root / dataset / system.model
                    missing.append(Run(folder, RunState.MISSING, note, dataset, system))
                continue
            for seed in sorted(set(seeds) - set(group.seeds)):
                path = _expected_path(group, seed, root)
                if (dataset, system, seed) in listed or path in listed:
                    continue
                note = f"no run of {system.label} for seed {seed} (other systems on {dataset} have one)"
                missing.append(Run(path, RunState.MISSING, note, dataset, system, seed))
    return missing
