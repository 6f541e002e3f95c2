"""``--log-to tensorboard``: the run's scalars and configuration as TensorBoard event files in ``<run>/tb/``.

Steps are logged at their step number, epochs' dev scores at the epoch's number, the final
scores at the selected epoch's; the configuration goes to the HParams dashboard, ranked by
:data:`~umt.pipeline.tracking.records.HEADLINE`. A resumed run adds an event file whose first
step tells TensorBoard to hide what the killed process logged after its last saved epoch, so
the curves show each step once. ``tensorboard --logdir runs/`` shows every run below ``runs/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umt.pipeline.run_dir import RunDir
from umt.pipeline.tracking import Destination
from umt.pipeline.tracking.records import HEADLINE, Scalar, final_scores, flat_config, step_scalars, type_scores
from umt.pipeline.training.observers import TrainingObserver

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class TensorBoardTracker(TrainingObserver):
    """Writes one event file per session of the run (its start, and each resume)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.config: dict[str, Scalar] = {}
        self.writer: SummaryWriter | None = None

    def _opened(self, first_step: int | None = None) -> SummaryWriter:
        """The event file, opened at the first thing logged: a resumed run's first step purges
        the steps logged after its checkpoint."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            from torch.utils.tensorboard.summary import hparams

            self.writer = SummaryWriter(str(self.folder), purge_step=first_step)
            for summary in hparams(self.config, {HEADLINE: 0.0}):
                self.writer.file_writer.add_summary(summary)
        return self.writer

    def _scalars(self, values: Mapping[str, float], step: int, writer: SummaryWriter) -> None:
        for tag, value in values.items():
            writer.add_scalar(tag, value, step)

    def begin(self, run_path: str, config: Mapping[str, Any]) -> None:
        self.config = flat_config(config)

    def step(self, step: int, epoch: int, loss: float, learning_rates: Mapping[str, float]) -> None:
        self._scalars(step_scalars(loss, learning_rates), step, self._opened(first_step=step))

    def epoch(self, epoch: int, record: Mapping[str, Any], dev: Mapping[str, Any]) -> None:
        self._scalars(type_scores("dev", dev), epoch, self._opened())

    def end(self, metrics: Mapping[str, Any]) -> None:
        self._scalars(final_scores(metrics), metrics["best_epoch"], self._opened())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def tracker(destination: Destination) -> TensorBoardTracker:
    return TensorBoardTracker(destination.run / RunDir.TENSORBOARD)
