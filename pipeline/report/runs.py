"""Run directories under a folder: the state each one is in, and what each finished run was trained with.

``umt train`` writes ``runs/<dataset>/<model>/seed<N>``, but the report does not rely on that
layout: it walks the whole tree, takes every folder holding ``config.json``, ``metrics.json``
or ``last.pt`` as a run, and reads the run's identity (dataset, model, ``--no-images``, image
backbone, seed) and its settings from its ``config.json``. Nothing found is dropped without a
word: a run that cannot be counted carries a :class:`RunState` and a note saying why, for the
report's status section. Which finished runs a row counts (one configuration, one run per seed) is ``choose``'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from umt.pipeline.errors import ConfigError
from umt.pipeline.metrics import PRIMARY
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.run_dir import RunConfig, RunDir
from umt.pipeline.train_config import RUNTIME_FIELDS

#: A folder holding any of these is a run directory (the first file each stage of a run writes).
MARKERS = (RunDir.CONFIG, RunDir.METRICS, RunDir.LAST)
#: How ``umt train`` names a seed's folder; such a folder without run files is a missing run.
SEED_FOLDER = re.compile(r"seed\d+")
#: The config values that do not tell two configurations apart: the seed (a row's runs differ in it) and
#: the runtime fields (how a run was computed, not what).
NOT_SETTINGS = ("seed", *RUNTIME_FIELDS)


class RunState(str, Enum):
    FINISHED = "finished"  # metrics.json readable: counted in the tables
    RESUMABLE = "resumable"  # last.pt, no metrics.json: interrupted (or still training)
    FAILED = "failed"  # config.json only: stopped before completing an epoch (or in its first)
    HALF_WRITTEN = "half-written"  # a run file missing, damaged or unreadable
    DUPLICATE = "duplicate"  # finished, but kept out for another run of the same system, settings and seed
    MISSING = "missing"  # expected (an empty seed folder, or a system or seed the table lacks)


@dataclass(frozen=True)
class System:
    """One row of a table: a registered model, trained with images or with ``--no-images``, and the
    image backbone whose features it read (None for a run that reads no images: a text-only model,
    ``--no-images``). Runs of one model with two backbones are two systems, so two rows: features of
    another network are another input, never another seed of the same experiment."""

    model: str
    no_images: bool = False
    backbone: str | None = None

    @property
    def name(self) -> str:
        """The model, marked when trained without images: a row's name beside the table's backbone column."""
        return f"{self.model} (no images)" if self.no_images else self.model

    @property
    def label(self) -> str:
        """The name with the backbone where there is one (``"umt (vgg16)"``): what tells two systems
        apart away from the backbone column (significance tests, notes, case studies, figures)."""
        return f"{self.name} ({self.backbone})" if self.backbone is not None else self.name

    @property
    def multimodal(self) -> bool:
        """Whether its model is a registered text+image recipe (an unregistered model is not)."""
        return self.model in model_names() and get_recipe(self.model).multimodal


@dataclass(frozen=True)
class Run:
    """One run directory as found. ``dataset``, ``system``, ``seed`` and ``settings`` are None or
    empty where config.json could not be read; ``metrics`` and ``finished_at`` (metrics.json's
    modification time, in seconds) are set only for finished runs."""

    path: Path
    state: RunState
    note: str = ""
    dataset: str | None = None
    system: System | None = None
    seed: int | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)  # every config value but NOT_SETTINGS
    metrics: Mapping[str, Any] | None = None
    finished_at: float | None = None

    @property
    def test_scores(self) -> Mapping[str, Any]:
        """The primary scheme's test scores of a finished run (overall and ``per_type``)."""
        assert self.metrics is not None, f"{self.path} is not finished"
        return self.metrics["test"][PRIMARY]

    @property
    def dev_f1(self) -> float:
        """The primary scheme's dev F1 of a finished run (its best epoch's): what runs are chosen on."""
        assert self.metrics is not None, f"{self.path} is not finished"
        return self.metrics["valid"][PRIMARY]["f1"]


@dataclass(frozen=True)
class Group:
    """The finished runs of one configuration (one system on one dataset, trained with one set of
    settings), one per seed, in seed order."""

    dataset: str
    system: System
    runs: tuple[Run, ...]

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs)

    @property
    def settings(self) -> Mapping[str, Any]:
        """The settings its runs share (every one of them: a run with another value is another group)."""
        return self.runs[0].settings

    def run_for(self, seed: int) -> Run | None:
        return next((run for run in self.runs if run.seed == seed), None)


def _settings(config: RunConfig) -> dict[str, Any]:
    """Every TrainConfig and ModelConfig value of a run but :data:`NOT_SETTINGS`, training ones first."""
    values = {**config.train_cfg.to_dict(), **config.model_cfg.to_dict()}
    return {name: value for name, value in values.items() if name not in NOT_SETTINGS}


def _backbone(config: RunConfig, origin: Path) -> str | None:
    """The image backbone of the feature cache the run read (config.json's ``features.manifest.backbone``);
    None when it read no images. A recorded cache that names no backbone is a damaged config: the
    run's row could not say what its images went through."""
    if config.cache is None or config.no_images:
        return None
    backbone = config.cache["manifest"].get("backbone")
    if not (isinstance(backbone, str) and backbone.strip() and backbone.isprintable()):
        raise ConfigError(
            f"{origin}: damaged run config (features.manifest.backbone must name the image backbone, "
            f"found {backbone!r:.60})"
        )
    return backbone


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
    """A ConfigError unless ``metrics`` holds the primary scheme's test scores and dev F1."""
    split = "test"
    try:
        test = metrics["test"][PRIMARY]
        for row in (test, *test["per_type"].values()):
            for key in ("precision", "recall", "f1", "support"):
                float(row[key])
        split = "dev"
        float(metrics["valid"][PRIMARY]["f1"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{path.name}: no {PRIMARY}-scheme {split} scores ({type(e).__name__}: {e})") from None


def read_run(path: Path) -> Run:
    """The state of the run directory ``path``; a damaged or missing file makes it half-written."""
    run = RunDir(path)
    try:
        config = run.config()
        backbone = _backbone(config, path / RunDir.CONFIG)
    except ConfigError as e:
        return Run(path, RunState.HALF_WRITTEN, _relative(str(e), path))
    identity = {
        "dataset": config.dataset,
        "system": System(config.model, config.no_images, backbone),
        "seed": config.train_cfg.seed,
        "settings": _settings(config),
    }
    if run.finished:
        try:
            metrics = run.metrics()
            _check_metrics(metrics, path / RunDir.METRICS)
        except ConfigError as e:
            return Run(path, RunState.HALF_WRITTEN, _relative(str(e), path), **identity)
        finished_at = (path / RunDir.METRICS).lstat().st_mtime
        return Run(path, RunState.FINISHED, metrics=metrics, finished_at=finished_at, **identity)
    if run.resumable:
        return Run(path, RunState.RESUMABLE, _progress(run, config), **identity)
    note = "no completed epoch: the run failed (or is still in its first epoch)"
    return Run(path, RunState.FAILED, note, **identity)


def collect_runs(root: Path) -> list[Run]:
    """Every run directory under ``root`` (and empty ``seed<N>`` folders, as missing runs), in path order."""
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
    return found


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
    ``runs`` (interrupted, failed, empty folders) are not listed again; a row with no backbone yet
    (a model none of whose runs finished) counts the model's runs with any backbone as tried."""
    listed = {(run.dataset, run.system, run.seed) for run in runs} | {run.path for run in runs}
    tried = {
        (run.dataset, system)
        for run in runs
        if run.system is not None
        for system in (run.system, replace(run.system, backbone=None))
    }
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
