"""``--log-to wandb``: an offline Weights & Biases run in ``<run>/wandb/``; ``wandb sync`` uploads it later.

umt asks for ``mode="offline"``, so nothing is sent while it trains. The project is
``umt-<dataset>``, the run is named ``<model> seed<N>`` and its config is the flattened
configuration. Steps are plotted against ``step``, dev scores against ``epoch``, and the final
scores go to the run's summary. Each session (the start, each resume) is its own offline run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from umt.pipeline.tracking import Destination
from umt.pipeline.tracking.records import final_scores, flat_config, step_scalars, type_scores
from umt.pipeline.training.observers import TrainingObserver


class WandbTracker(TrainingObserver):
    def __init__(self, folder: Path):
        self.folder = folder
        self.session: Any = None
        self.finished = False

    def begin(self, run_path: str, config: Mapping[str, Any]) -> None:
        import wandb

        self.session = wandb.init(
            dir=str(self.folder),
            mode="offline",
            project=f"umt-{config['dataset']}",
            name=f"{config['model']} seed{config['train']['seed']}",
            config=flat_config(config),
        )
        for prefix, axis in (("train", "step"), ("lr", "step"), ("dev", "epoch")):
            self.session.define_metric(f"{prefix}/*", step_metric=axis)

    def step(self, step: int, epoch: int, loss: float, learning_rates: Mapping[str, float]) -> None:
        self.session.log({"step": step, **step_scalars(loss, learning_rates)})

    def epoch(self, epoch: int, record: Mapping[str, Any], dev: Mapping[str, Any]) -> None:
        self.session.log({"epoch": epoch, **type_scores("dev", dev)})

    def end(self, metrics: Mapping[str, Any]) -> None:
        self.session.summary.update(final_scores(metrics))
        self.finished = True

    def close(self) -> None:
        if self.session is not None:
            self.session.finish(exit_code=0 if self.finished else 1)


def tracker(destination: Destination) -> WandbTracker:
    return WandbTracker(destination.run)
