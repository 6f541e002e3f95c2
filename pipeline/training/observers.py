"""What a run tells the world while it trains: the observers of the training loop.

An observer is handed to :func:`umt.pipeline.training.run.train_run` (``umt train --log-to``
builds trackers from :mod:`umt.pipeline.tracking`; ``umt sweep`` adds one that reports each
epoch's dev F1 to its pruner). The loop calls them on the main process only, in this order:
``begin`` once with the run's resolved configuration, ``step`` after every optimiser step,
``epoch`` after every epoch's dev evaluation, ``end`` with the finished run's metrics, and
``close`` always, also when training stops early, is interrupted or fails.

An observer may stop the run from ``epoch`` by raising (a pruned sweep trial does): the
epoch's files are written before observers are called, so the run stays resumable. Each
method's default does nothing, so an observer overrides only what it needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class TrainingObserver:
    def begin(self, run_path: str, config: Mapping[str, Any]) -> None:
        """The run starts or resumes; ``config`` is what its ``config.json`` records."""

    def step(self, step: int, epoch: int, loss: float, learning_rates: Mapping[str, float]) -> None:
        """Optimiser step ``step`` (counted from 1 over the whole run) of ``epoch`` (from 1) is done:
        the mean loss per window of this step, and each parameter group's rate (``encoder``,
        ``head``, or ``model`` where everything trains from scratch)."""

    def epoch(self, epoch: int, record: Mapping[str, Any], dev: Mapping[str, Mapping[str, float]]) -> None:
        """Epoch ``epoch`` (from 1) is done and saved: ``record`` is its ``log.jsonl`` line, ``dev``
        the dev scores as ``metrics.json`` holds them (per scheme, ``umt.pipeline.metrics.PRIMARY``
        first: precision, recall, f1 and ``per_type``)."""

    def end(self, metrics: Mapping[str, Any]) -> None:
        """The run is finished: ``metrics`` is its ``metrics.json`` (dev and test scores per type)."""

    def close(self) -> None:
        """Release what the observer holds (files, connections); called exactly once."""


class Observers(TrainingObserver):
    """Several observers as one, called in order; ``close`` reaches each even if one fails."""

    def __init__(self, observers: Iterable[TrainingObserver] = ()):
        self.members = list(observers)

    def __bool__(self) -> bool:
        return bool(self.members)

    def begin(self, run_path, config) -> None:
        for observer in self.members:
            observer.begin(run_path, config)

    def step(self, step, epoch, loss, learning_rates) -> None:
        for observer in self.members:
            observer.step(step, epoch, loss, learning_rates)

    def epoch(self, epoch, record, dev) -> None:
        for observer in self.members:
            observer.epoch(epoch, record, dev)

    def end(self, metrics) -> None:
        for observer in self.members:
            observer.end(metrics)

    def close(self) -> None:
        failure = None
        for observer in self.members:
            try:
                observer.close()
            except Exception as e:  # noqa: BLE001 - the others still close; the first failure is raised after
                failure = failure or e
        if failure is not None:
            raise failure
