"""``--log-to mlflow``: one MLflow run per umt run, in a local store unless ``--tracking-uri`` says otherwise.

The default store is the SQLite file ``<run>/mlflow.db``, so nothing leaves the run folder and
no server or network default is involved (``MLFLOW_TRACKING_URI`` is not read); give
``--tracking-uri sqlite:///runs/mlflow.db`` to collect many runs in one store. The experiment
is the dataset, the run is named ``<model> seed<N>``. Params are the flattened configuration,
metrics the names of :mod:`umt.pipeline.tracking.records`. The MLflow run's id is kept in
``<run>/tracking.json``, so a resumed run continues the same MLflow run (marked KILLED while it
is stopped, FINISHED once it ends). A step's metrics are sent with its epoch's dev scores, once
the epoch is saved: the steps of an epoch the run did not keep (it stopped in the middle) are
not sent, so a resumed run's history holds every step once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umt.pipeline.errors import ConfigError
from umt.pipeline.run_dir import RunDir
from umt.pipeline.tracking import Destination
from umt.pipeline.tracking.records import final_scores, flat_config, step_scalars, type_scores
from umt.pipeline.training.observers import TrainingObserver

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

#: The most metrics (and params) one ``log_batch`` call may carry (MLflow's limits are 1000 and 100).
METRICS_PER_BATCH = 1000
PARAMS_PER_BATCH = 100


def _batches(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def default_uri(run: Path) -> str:
    """The run's own SQLite store."""
    return f"sqlite:///{(run / RunDir.MLFLOW_DB).resolve()}"


class MlflowTracker(TrainingObserver):
    def __init__(self, run: Path, uri: str):
        self.run, self.uri = RunDir(run), uri
        self.client: MlflowClient | None = None
        self.run_id = ""
        self.pending: list[Metric] = []
        self.finished = False

    def begin(self, run_path: str, config: Mapping[str, Any]) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.run_id = self._continued() or self._started(config)
        except MlflowException as e:
            message = " ".join(str(e).split())[:200]
            raise ConfigError(f"--log-to mlflow: cannot use the store {self.uri} ({message})") from None

    def _continued(self) -> str:
        """The MLflow run this run was tracked in before it stopped, set running again; "" if none."""
        if not (self.run.path / RunDir.TRACKING).is_file():
            return ""
        stored = self.run.read_json(RunDir.TRACKING)
        kept = stored.get("mlflow") if isinstance(stored, dict) else None
        if not isinstance(kept, dict) or kept.get("uri") != self.uri or not isinstance(kept.get("run_id"), str):
            return ""
        self.client.update_run(kept["run_id"], status="RUNNING")
        return kept["run_id"]

    def _started(self, config: Mapping[str, Any]) -> str:
        from mlflow.entities import Param

        name = config["dataset"]
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run_id = self.client.create_run(
            experiment_id,
            run_name=f"{config['model']} seed{config['train']['seed']}",
            tags={"umt.run": str(self.run.path.resolve())},
        ).info.run_id
        params = [Param(key, str(value)) for key, value in flat_config(config).items()]
        for batch in _batches(params, PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=batch)
        self.run.write_json(RunDir.TRACKING, {"mlflow": {"uri": self.uri, "run_id": run_id}})
        return run_id

    def _record(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, value, now, step) for key, value in values.items()]

    def _flush(self) -> None:
        for batch in _batches(self.pending, METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch)
        self.pending = []

    def step(self, step: int, epoch: int, loss: float, learning_rates: Mapping[str, float]) -> None:
        self._record(step_scalars(loss, learning_rates), step)

    def epoch(self, epoch: int, record: Mapping[str, Any], dev: Mapping[str, Any]) -> None:
        self._record(type_scores("dev", dev), epoch)
        self._flush()

    def end(self, metrics: Mapping[str, Any]) -> None:
        self._record(final_scores(metrics), metrics["best_epoch"])
        self._flush()
        self.finished = True

    def close(self) -> None:
        if self.client is None or not self.run_id:
            return
        self.client.set_terminated(self.run_id, "FINISHED" if self.finished else "KILLED")


def tracker(destination: Destination) -> MlflowTracker:
    return MlflowTracker(destination.run, destination.tracking_uri or default_uri(destination.run))
