"""Experiment tracking: the observer protocol of the training loop, and what each tracker writes.

One tiny bert-crf run (2 epochs, 6 steps each) is tracked by TensorBoard, MLflow and a recording
observer at once; the tests read each back against the run's own ``log.jsonl`` and
``metrics.json``. Another is stopped by an observer after its first epoch and resumed.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import train_request

from umt.pipeline.errors import ConfigError
from umt.pipeline.run_dir import RunDir
from umt.pipeline.tracking.records import flat_config
from umt.pipeline.training.observers import TrainingObserver
from umt.stages import train

EPOCHS, TRAIN_POSTS, BATCH = 2, 48, 8
STEPS = EPOCHS * math.ceil(TRAIN_POSTS / BATCH)  # the tiny posts are one window each
TYPES = ("micro", "LOC", "PER")


class Recorder(TrainingObserver):
    """Remembers every call, in order."""

    def __init__(self):
        self.calls: list[tuple] = []

    def begin(self, run_path, config):
        self.calls.append(("begin", run_path, dict(config)))

    def step(self, step, epoch, loss, learning_rates):
        self.calls.append(("step", step, epoch, loss, dict(learning_rates)))

    def epoch(self, epoch, record, dev):
        self.calls.append(("epoch", epoch, dict(record), dev))

    def end(self, metrics):
        self.calls.append(("end", metrics))

    def close(self):
        self.calls.append(("close",))

    def of(self, kind: str) -> list[tuple]:
        return [call for call in self.calls if call[0] == kind]


class StopAfterFirstEpoch(Recorder):
    """An observer that ends the run from ``epoch``, as a pruned sweep trial does."""

    def epoch(self, epoch, record, dev):
        super().epoch(epoch, record, dev)
        raise RuntimeError("pruned")


def _epoch_events(run: Path) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "time"} for e in RunDir(run).events() if e["event"] == "epoch"]


@pytest.fixture(scope="module")
def tracked(tiny_root, tiny_encoder_dir, tmp_path_factory, one_thread):
    """(run folder, recording observer) of one run tracked by TensorBoard and MLflow."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    run = tmp_path_factory.mktemp("tracked") / "run"
    recorder = Recorder()
    request = train_request(tiny_root, tiny_encoder_dir, run, log_to=("tensorboard", "mlflow"))
    train.run(request, observe=lambda _: [recorder])
    return run, recorder


def test_observers_hear_the_run_begin_step_epoch_end_and_close_once(tracked):
    run, recorder = tracked
    kinds = [call[0] for call in recorder.calls]
    assert kinds == ["begin"] + (["step"] * (STEPS // EPOCHS) + ["epoch"]) * EPOCHS + ["end", "close"]
    (_, path, config), *_ = recorder.calls
    assert path == str(run) and config == RunDir(run).read_json(RunDir.CONFIG)
    steps = recorder.of("step")
    assert [s[1] for s in steps] == list(range(1, STEPS + 1))
    assert [s[2] for s in steps] == [1 + (n - 1) * EPOCHS // STEPS for n in range(1, STEPS + 1)]
    assert all(loss > 0 and set(rates) == {"encoder", "head"} for *_, loss, rates in steps)
    assert [e[2] for e in recorder.of("epoch")] == _epoch_events(run)
    assert all(e[3]["default"]["per_type"].keys() == {"LOC", "PER"} for e in recorder.of("epoch"))
    assert recorder.of("end") == [("end", RunDir(run).metrics())]


def test_tensorboard_holds_every_step_each_epochs_dev_scores_and_the_final_ones(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    run, recorder = tracked
    events = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == list(range(1, STEPS + 1))
    assert [e.value for e in loss] == pytest.approx([s[3] for s in recorder.of("step")], rel=1e-6)
    assert len(events.Scalars("lr/encoder")) == len(events.Scalars("lr/head")) == STEPS
    logged = _epoch_events(run)
    for kind in TYPES:
        for score in ("precision", "recall", "f1"):
            assert [e.step for e in events.Scalars(f"dev/{kind}/{score}")] == list(range(1, EPOCHS + 1))
    assert [e.value for e in events.Scalars("dev/micro/f1")] == pytest.approx([e["dev"]["f1"] for e in logged])
    metrics = RunDir(run).metrics()["test"]["default"]
    for kind, row in (("micro", metrics), *metrics["per_type"].items()):
        (final,) = events.Scalars(f"final/test/{kind}/f1")
        assert final.value == pytest.approx(row["f1"], rel=1e-6)
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    config = flat_config(RunDir(run).read_json(RunDir.CONFIG))
    assert hparams.keys() == config.keys()
    for key, value in config.items():
        kept = hparams[key]
        assert (kept.string_value if isinstance(value, str) else kept.number_value) == value, key


def test_mlflow_holds_the_config_as_params_and_every_metrics_history(tracked):
    from mlflow.tracking import MlflowClient

    run, recorder = tracked
    client = MlflowClient(tracking_uri=f"sqlite:///{run / RunDir.MLFLOW_DB}")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.info.run_id == RunDir(run).read_json(RunDir.TRACKING)["mlflow"]["run_id"]
    config = RunDir(run).read_json(RunDir.CONFIG)
    assert mlflow_run.data.params == {key: str(value) for key, value in flat_config(config).items()}
    history = client.get_metric_history(mlflow_run.info.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(1, STEPS + 1))
    dev = sorted(client.get_metric_history(mlflow_run.info.run_id, "dev/micro/f1"), key=lambda m: m.step)
    assert [m.value for m in dev] == [e["dev"]["f1"] for e in _epoch_events(run)]
    metrics = RunDir(run).metrics()
    for split in ("dev", "test"):
        scores = metrics["valid" if split == "dev" else "test"]["default"]
        assert mlflow_run.data.metrics[f"final/{split}/micro/f1"] == scores["f1"]
        for kind, row in scores["per_type"].items():
            assert mlflow_run.data.metrics[f"final/{split}/{kind}/recall"] == row["recall"]


def test_a_tracked_run_is_replaced_with_its_tracker_files_and_foreign_ones_are_refused(tracked, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tracked[0], copy)
    with RunDir(copy).claimed(resume=False, overwrite=True) as state:
        assert state == "new"
        assert sorted(p.name for p in copy.iterdir()) == [".lock"]
    (tmp_path / "other" / "tb").mkdir(parents=True)
    (tmp_path / "other" / "tb" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"files umt did not write \(tb/notes.txt\)"):
        with RunDir(tmp_path / "other").claimed(resume=False, overwrite=True):
            pass


def test_a_run_an_observer_stops_resumes_into_the_same_tracked_run(tiny_root, tiny_encoder_dir, tmp_path, one_thread):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    stopper = StopAfterFirstEpoch()
    request = train_request(tiny_root, tiny_encoder_dir, run, log_to=("tensorboard", "mlflow"))
    with pytest.raises(RuntimeError, match="pruned"):
        train.run(request, observe=lambda _: [stopper])
    assert [call[0] for call in stopper.calls].count("close") == 1 and not stopper.of("end")
    assert RunDir(run).resumable
    client = MlflowClient(tracking_uri=f"sqlite:///{run / RunDir.MLFLOW_DB}")
    (stopped,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert stopped.info.status == "KILLED"

    later = Recorder()
    (metrics,) = train.run(replace(request, resume=True), observe=lambda _: [later])
    assert metrics == RunDir(run).metrics()
    assert [call[1] for call in later.of("epoch")] == [2] and len(later.of("end")) == 1
    assert [call[1] for call in later.of("step")] == list(range(STEPS // EPOCHS + 1, STEPS + 1))
    (resumed,) = client.search_runs([stopped.info.experiment_id])
    assert resumed.info.run_id == stopped.info.run_id and resumed.info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(resumed.info.run_id, "train/loss")) == list(
        range(1, STEPS + 1)
    )
    events = EventAccumulator(str(run / "tb"))  # one event file per session, read as one run
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, STEPS + 1))
    assert [e.step for e in events.Scalars("dev/micro/f1")] == [1, 2]


def test_wandb_writes_an_offline_run_inside_the_run_folder(tiny_root, tiny_encoder_dir, tmp_path, one_thread):
    pytest.importorskip("wandb")
    run = tmp_path / "run"
    train.run(train_request(tiny_root, tiny_encoder_dir, run, log_to=("wandb",), train={"epochs": 1}))
    assert any(p.name.startswith("offline-run-") for p in (run / RunDir.WANDB).iterdir())


def test_unknown_or_missing_trackers_stop_the_request(tiny_root, tiny_encoder_dir, tmp_path, monkeypatch):
    def request(**kw):
        return train_request(tiny_root, tiny_encoder_dir, tmp_path / "run", **kw)

    with pytest.raises(ConfigError, match=r"--log-to 'tensorbord' \(did you mean 'tensorboard'\?\)"):
        request(log_to=("tensorbord",))
    with pytest.raises(ConfigError, match="--tracking-uri is the MLflow store: add --log-to mlflow"):
        request(log_to=("tensorboard",), tracking_uri="sqlite:///x.db")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    with pytest.raises(ConfigError) as refused:
        request(log_to=("tensorboard", "mlflow"))
    assert str(refused.value) == "--log-to mlflow: the mlflow package is not installed; pip install mlflow"
    assert not (tmp_path / "run").exists()


TRACKER_MODULES = ("tensorboard", "mlflow", "wandb", "torch.utils.tensorboard")

PROBE = """
import sys
from pathlib import Path

def loaded():
    return sorted(m for m in sys.modules if m in {modules!r} or m.split(".")[0] in {modules!r})

import umt.stages.train
print(loaded())
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig
from umt.stages.requests import TrainRequest
umt.stages.train.run(TrainRequest(
    dataset="tiny", model="bert-crf", data_root=Path({root!r}), model_cfg=ModelConfig(encoder={encoder!r}, heads=4),
    train_cfg=TrainConfig(epochs=1, batch_size=16, lr=2e-3, warmup=0.0), out=Path({out!r}),
))
print(loaded(), "torch" in sys.modules)
"""


def test_no_tracker_package_is_imported_unless_asked_for(tiny_root, tiny_encoder_dir, tmp_path):
    probe = PROBE.format(modules=TRACKER_MODULES, root=str(tiny_root), encoder=str(tiny_encoder_dir), out=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == "[]"
    assert done.stdout.splitlines()[-1] == "[] True"  # it trained (torch), with no tracker
