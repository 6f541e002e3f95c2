"""``umt sweep``: its search spaces, a grid visited once, a SIGKILL resumed, two workers sharing a storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from umt.pipeline.errors import ConfigError
from umt.pipeline.metrics import PRIMARY
from umt.pipeline.sweep.space import parse_space

GRID = "lr=1e-3,3e-3 dropout=0.1,0.3"
POINTS = [{"lr": lr, "dropout": d} for lr in (1e-3, 3e-3) for d in (0.1, 0.3)]


@pytest.mark.parametrize(
    ("text", "option", "message"),
    [
        ("lrr=1e-5,1e-4", "--grid", "did you mean 'lr'"),
        ("lr=1e-5:1e-4", "--grid", "ranges (low:high) are for --space"),
        ("seed=1,2", "--grid", "not a hyper-parameter"),
        ("device=cpu,cuda", "--grid", "not a hyper-parameter"),
        ("lr=1e-4:1e-5", "--space", "expected low < high"),
        ("lr=0:1e-4:log", "--space", "must start above 0"),
        ("lr=1e-5,1e-5", "--grid", "repeated"),
        ("lr=1e-5 lr=1e-4", "--grid", "given twice"),
        ("epochs=two,3", "--grid", "expected an int"),
        ("encoder=a:b", "--space", "not a number"),
        ("lr", "--grid", "expected name=values"),
        ("", "--grid", "at least one setting"),
    ],
)
def test_bad_spaces_are_one_line_errors(text, option, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_space(text, option)


def test_space_kinds_and_grid_points():
    space = parse_space("lr=1e-5:1e-4:log epochs=2:8 dropout=0.1,0.5 crf=true,false", "--space")
    lr, epochs, dropout, crf = space.dimensions
    assert (lr.low, lr.high, lr.log) == (1e-5, 1e-4, True)
    assert (epochs.low, epochs.high, epochs.log) == (2, 8, False)
    assert dropout.choices == (0.1, 0.5) and crf.choices == (True, False)
    assert space.by_group({"lr": 1e-5, "dropout": 0.5}) == {"model": {"dropout": 0.5}, "train": {"lr": 1e-5}}
    grid = parse_space(GRID, "--grid")
    assert grid.points() == POINTS and grid.is_grid


def _sweep_command(root: Path, encoder: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "umt.cli", "sweep", "--dataset", "tiny", "--model", "bert-crf",
        "--data-root", str(root), "--encoder", str(encoder), "--out", str(out), "--grid", GRID,
        "--set", "heads=4", "--set", f"epochs={epochs}", "--set", "batch_size=8", "--set", "warmup=0",
        "--device", "cpu", "--no-prune", "--heartbeat", "1", *extra,
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _events(folder: Path, kind: str) -> int:
    log = folder / "log.jsonl"
    return sum(json.loads(line)["event"] == kind for line in log.read_text().splitlines()) if log.exists() else 0


def _trained_points(out: Path) -> list[dict]:
    """The grid point of every trial folder, once per time it started training from scratch."""
    points = []
    for folder in sorted(out.glob("trial-*")):
        train = json.loads((folder / "config.json").read_text())
        point = {"lr": train["train"]["lr"], "dropout": train["model_config"]["dropout"]}
        points += [point] * _events(folder, "start")
    return points


def _sorted(points: list[dict]) -> list[dict]:
    return sorted(points, key=lambda p: (p["lr"], p["dropout"]))


def test_grid_sweep_visits_every_point_once_and_names_the_best(tiny_root, tiny_encoder_dir, tmp_path, one_thread):
    from conftest import train_request

    from umt.stages import sweep
    from umt.stages.requests import SweepRequest

    out = tmp_path / "sweep"
    req = SweepRequest(base=train_request(tiny_root, tiny_encoder_dir, None), grid=GRID, out=out, prune=False)
    summary = sweep.run(req)
    assert _sorted(_trained_points(out)) == _sorted(POINTS)
    best = json.loads((out / "best.json").read_text())["best"]
    dev = {f.name: json.loads((f / "metrics.json").read_text())["valid"][PRIMARY]["f1"] for f in out.glob("trial-*")}
    assert best["dev_f1"] == max(dev.values()) == dev[best["run"]]
    assert summary["by_state"] == {"complete": 4}
    assert (out / "history.png").stat().st_size > 1000 and (out / "trials.md").read_text().count("| complete") == 4

    again = sweep.run(req)  # a finished sweep trains nothing more
    assert again["best"] == summary["best"] and _sorted(_trained_points(out)) == _sorted(POINTS)
    other = SweepRequest(base=req.base, grid="lr=1e-3,2e-3", out=out)
    with pytest.raises(ConfigError, match="holds another sweep"):
        sweep.run(other)


def test_best_command_trains_the_best_trial_again(tiny_root, tiny_encoder_dir, tmp_path, one_thread, monkeypatch):
    """The printed `umt train` command, parsed by the real CLI, resolves to the trial's own settings."""
    import shlex

    from conftest import train_request
    from typer.testing import CliRunner

    from umt import cli
    from umt.pipeline.models.catalog import get_recipe
    from umt.pipeline.run_dir import RunDir
    from umt.pipeline.train_config import RUNTIME_FIELDS
    from umt.stages import sweep, train
    from umt.stages.requests import SweepRequest

    out = tmp_path / "sweep"
    base = train_request(tiny_root, tiny_encoder_dir, None, train={"epochs": 1})
    summary = sweep.run(SweepRequest(base=base, space="lr=1e-4:1e-2:log dropout=0.1,0.3", trials=3, out=out))
    command = summary["best"]["command"]
    asked = []
    monkeypatch.setattr(train, "run", lambda req, *a, **k: asked.append(req))
    result = CliRunner().invoke(cli.app, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    model_cfg, train_cfg = asked[0].configs()
    config = RunDir(out / summary["best"]["run"]).config()
    built = get_recipe("bert-crf").configure(model_cfg)  # the recipe's switches, as the run records them
    assert built.to_dict() == config.model_cfg.to_dict()
    runtime = {*RUNTIME_FIELDS}
    assert {k: v for k, v in train_cfg.to_dict().items() if k not in runtime} == {
        k: v for k, v in config.train_cfg.to_dict().items() if k not in runtime
    }


def test_a_pruned_trial_stops_at_its_epoch():
    import optuna

    from umt.pipeline.sweep.study import _Reporting

    class Trial:
        reported: list = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) == 2

    pruning = _Reporting(Trial(), prune=True)
    pruning.epoch(1, {}, {PRIMARY: {"f1": 0.5}})
    with pytest.raises(optuna.TrialPruned, match="after epoch 2"):
        pruning.epoch(2, {}, {PRIMARY: {"f1": 0.4}})


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_killed_sweep_resumes_without_repeating_a_finished_trial(tiny_root, tiny_encoder_dir, tmp_path):
    out = tmp_path / "sweep"
    command = _sweep_command(tiny_root, tiny_encoder_dir, out, epochs=12)
    first = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(out / "trial-001" / "last.pt", first)  # trial 0 is finished, trial 1 is part-way
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not (out / "trial-001" / "metrics.json").exists()
    done = subprocess.run(command, env=_env(), capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert _sorted(_trained_points(out)) == _sorted(POINTS)  # each point started once
    assert _events(out / "trial-000", "start") == 1 and _events(out / "trial-000", "resume") == 0
    assert _events(out / "trial-001", "resume") == 1  # continued from its last epoch
    assert json.loads((out / "best.json").read_text())["by_state"] == {"complete": 4}


def test_two_workers_on_one_storage_run_each_trial_once(tiny_root, tiny_encoder_dir, tmp_path):
    out = tmp_path / "sweep"
    command = _sweep_command(tiny_root, tiny_encoder_dir, out, epochs=6)
    workers = [subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in "ab"]
    for worker in workers:
        assert worker.wait(timeout=600) == 0, worker.stderr.read().decode()[-2000:]
    assert _sorted(_trained_points(out)) == _sorted(POINTS)
    assert json.loads((out / "best.json").read_text())["by_state"] == {"complete": 4}
