"""Experiment trackers: what ``umt train --log-to tensorboard,mlflow,wandb`` adds to a run.

Each tracker is a :class:`~umt.pipeline.training.observers.TrainingObserver` that records, per
run, the resolved configuration, every optimiser step's loss and learning rates, every epoch's
dev scores per entity type, and the finished run's dev and test scores (the names are
:mod:`umt.pipeline.tracking.records`'). A backend lives in its own module, imported only when a
run asks for it, so neither umt nor a run without ``--log-to`` loads a tracker's package:

- ``tensorboard``: event files in ``<run>/tb/``;
- ``mlflow``: an MLflow run in ``--tracking-uri`` (default: the SQLite store ``<run>/mlflow.db``);
- ``wandb``: an offline Weights & Biases run in ``<run>/wandb/`` (``wandb sync`` uploads it).

:func:`check_log_to` runs when a request is built, before torch loads: an unknown name or a
tracker whose package is not installed is one line then, not a failure after the data is read.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from umt.pipeline.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from umt.pipeline.training.observers import TrainingObserver


@dataclass(frozen=True)
class Destination:
    """Where one run's trackers write: the run folder, and the MLflow store if not the run's own."""

    run: Path
    tracking_uri: str | None = None


@dataclass(frozen=True)
class Backend:
    """A tracker: the package it needs (the name pip installs and Python imports) and the module
    of this package whose ``tracker(destination)`` builds its observer."""

    package: str
    module: str

    def tracker(self, destination: Destination) -> TrainingObserver:
        return importlib.import_module(f"{__name__}.{self.module}").tracker(destination)


#: ``--log-to`` names and their backends.
BACKENDS = {
    "tensorboard": Backend("tensorboard", "tensorboard_events"),
    "mlflow": Backend("mlflow", "mlflow_store"),
    "wandb": Backend("wandb", "wandb_offline"),
}


def parse_log_to(text: str) -> tuple[str, ...]:
    """``--log-to tensorboard,mlflow`` as names (blanks between the commas ignored)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def check_log_to(names: Sequence[str], tracking_uri: str | None = None) -> None:
    """Every name a known tracker whose package is installed, named once; ``tracking_uri`` only with mlflow."""
    for name in names:
        backend = BACKENDS.get(name)
        if backend is None:
            raise ConfigError(f"--log-to {name!r}{did_you_mean(name, BACKENDS)}: choose from {', '.join(BACKENDS)}")
        if importlib.util.find_spec(backend.package) is None:
            raise ConfigError(
                f"--log-to {name}: the {backend.package} package is not installed; pip install {backend.package}"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"--log-to {','.join(names)}: a tracker is named twice")
    if tracking_uri is not None and "mlflow" not in names:
        raise ConfigError("--tracking-uri is the MLflow store: add --log-to mlflow")


def trackers(names: Sequence[str], destination: Destination) -> list[TrainingObserver]:
    """The observers of one run for the trackers ``names`` (checked by :func:`check_log_to`)."""
    return [BACKENDS[name].tracker(destination) for name in names]
