"""Bad input gets one line and exit status 2, never a traceback, never silent loss.

Each case here was tried by hand and once ended in a traceback, a half-written run directory or
a silent wrong result. Most go through ``umt.cli.main`` in-process, exactly as a user's command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import train_request

from umt.cache.lock import exclusive_lock
from umt.cli import main
from umt.pipeline.errors import ConfigError
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.run_dir import RunDir
from umt.pipeline.training.loop import TrainingInterrupted
from umt.stages import train

WEIGHTS = RunDir.WEIGHTS


def umt(argv: list[str], capsys) -> tuple[int, str]:
    """Run ``umt ARGV`` in this process: (exit status, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    return exited.value.code, capsys.readouterr().err


def one_line_error(code: int, err: str) -> str:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished_run(tiny_root, tiny_encoder_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    train.run(train_request(tiny_root, tiny_encoder_dir, out, train={"epochs": 1}))
    return out


# ---- arguments: checked before anything heavy loads ----------------------------------------------

LIGHT_CHECK = textwrap.dedent(
    """
    import json, sys
    from umt.cli import main
    results = []
    for argv in json.loads(sys.argv[1]):
        try:
            main(argv)
        except SystemExit as e:
            results.append(e.code)
    print(json.dumps({"codes": results, "torch": "torch" in sys.modules}))
    """
)


def test_bad_arguments_are_refused_before_torch_loads(tmp_path, tiny_root):
    empty = tmp_path / "empty-encoder"
    empty.mkdir()
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    (config_only / "config.json").write_text("{}")
    locked = tmp_path / "feats.h5"
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.jpg").write_bytes(b"not really")
    train_ = ["train", "--dataset", "tiny", "--data-root", str(tiny_root), "--model", "bert-crf"]
    cases = {
        "--epochs must be at least 1, got 0": [*train_, "--epochs", "0"],
        "--epochs must be at least 1, got -1": [*train_, "--epochs", "-1"],
        "--batch-size must be at least 1, got 0": [*train_, "--batch-size", "0"],
        "--lr must be positive, got -1.0": [*train_, "--lr", "-1"],
        "--seeds '1,a': expected comma-separated whole numbers": [*train_, "--seeds", "1,a"],
        "--set max_length must be at least 8, got 1": [*train_, "--set", "max_length=1"],
        "unknown model 'nope'": [*train_, "--model", "nope"],
        "--device 'gpu'": [*train_, "--device", "gpu"],
        f"encoder folder {empty} is empty": [*train_, "--encoder", str(empty)],
        f"encoder folder {config_only} lacks a tokenizer": [*train_, "--encoder", str(config_only)],
        f"encoder folder {tmp_path / 'nowhere'} does not exist": [*train_, "--encoder", str(tmp_path / "nowhere")],
        "this model reads word vectors: pass --word-vectors PATH": [*train_[:-1], "bilstm-crf"],
        f"word vectors {tmp_path / 'glove.txt'} do not exist": [
            *train_[:-1],
            "hbilstm-crf",
            "--word-vectors",
            str(tmp_path / "glove.txt"),
        ],
        "--set optimizer must be one of adamw, sgd, got 'adam'": [*train_, "--set", "optimizer=adam"],
        "char_encoder must be one of none, cnn, lstm, got 'gru'": [*train_, "--set", "char_encoder=gru"],
        "--recipe 'papr' (did you mean 'paper'?)": [*train_, "--recipe", "papr"],
        "a resumed run keeps the settings it was started with: drop --recipe": [
            *train_,
            "--resume",
            "--recipe",
            "paper",
        ],
        "dataset folder": ["train", "--data-root", str(tmp_path / "no-root")],
        "is being written by": ["extract-images", "--images", str(images), "--out", str(locked)],
        "--split 'dev'": ["eval", str(tmp_path), "--split", "dev"],
        "nor in the local Hugging Face cache, and this machine is offline (HF_HUB_OFFLINE); on a machine with "
        "network run `hf download someone/absent-model": [*train_, "--encoder", "someone/absent-model"],
    }
    with exclusive_lock(locked):  # another "process" writes the cache
        done = subprocess.run(
            [sys.executable, "-c", LIGHT_CHECK, json.dumps(list(cases.values()))],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["codes"] == [2] * len(cases)
    assert result["torch"] is False  # every refusal came before torch (seconds) was imported
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == len(cases), done.stderr
    for (expected, _), line in zip(cases.items(), lines, strict=True):
        assert line.startswith("error: ") and expected in line, (expected, line)


# ---- damaged run directories ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda run: (run / WEIGHTS).write_bytes(b""), "model.safetensors is empty (0 bytes)"),
        (lambda run: (run / WEIGHTS).write_bytes((run / WEIGHTS).read_bytes()[:2000]), "damaged or truncated"),
        (lambda run: (run / WEIGHTS).write_bytes(b"\x00garbage" * 100), "damaged or truncated"),
        (lambda run: (run / "config.json").write_text('{"model": "x",\n  oops'), "config.json:2: not valid JSON"),
        (lambda run: (run / "labels.json").unlink(), "it has no labels.json"),
    ],
)
def test_a_damaged_run_directory_is_named(finished_run, tmp_path, capsys, damage, words):
    run = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(finished_run), str(run)], check=True)
    damage(run)
    err = one_line_error(*umt(["eval", run], capsys))
    assert words in err


def test_eval_on_a_label_type_the_run_never_saw(finished_run, tmp_path, capsys):
    data = tmp_path / "posts.jsonl"
    data.write_text(
        '{"tokens": ["Anna", "visits", "Paris"], "labels": ["B-PER", "O", "B-LOC"]}\n'
        '{"tokens": ["Expo", "2025"], "labels": ["B-EVENT", "I-EVENT"]}\n'
    )
    err = one_line_error(*umt(["eval", finished_run, "--data", data], capsys))
    assert f"{data}:2: entity type EVENT is not one this model was trained on (LOC, PER)" in err


def test_unwritable_outputs_are_refused_before_any_work(
    finished_run, tiny_root, tiny_encoder_dir, tmp_path, capsys, monkeypatch
):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    train_ = [
        "train",
        "--data-root",
        tiny_root,
        "--dataset",
        "tiny",
        "--model",
        "bert-crf",
        "--encoder",
        tiny_encoder_dir,
    ]
    err = one_line_error(*umt([*train_, "--out", blocker / "run"], capsys))
    assert f"cannot create the run directory {blocker / 'run'}" in err
    # Permission bits do not stop root (CI runs as root): make the folder look read-only to the check.
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o555)
    real_access = os.access

    def access(target, path, mode):
        return False if Path(path) == target and mode & os.W_OK else real_access(path, mode)

    monkeypatch.setattr(os, "access", lambda p, m: access(readonly, p, m))
    err = one_line_error(*umt(["eval", finished_run, "--out", readonly / "scores.json"], capsys))
    assert f"the folder {readonly} is not writable" in err
    assert not (finished_run / "eval_test.json").exists()  # refused before scoring, nothing written elsewhere
    (readonly / "run").mkdir()
    monkeypatch.setattr(os, "access", lambda p, m: access(readonly / "run", p, m))
    err = one_line_error(*umt([*train_, "--out", readonly / "run"], capsys))
    assert f"cannot write into the run directory {readonly / 'run'}: permission denied" in err


# ---- data that would train silently wrong -------------------------------------------------------


def _jsonl_dataset(root: Path, name: str, image_every: int) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        lines = []
        for i in range(8):
            post = {"tokens": ["Anna", "visits", "Paris"], "labels": ["B-PER", "O", "B-LOC"]}
            post["image"] = f"{i}.jpg" if image_every and i % image_every == 0 else None
            lines.append(json.dumps(post))
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")


def _cache_for(root: Path, name: str) -> Path:
    from umt.stages import extract_images
    from umt.stages.requests import ExtractRequest

    ids = root / "ids.txt"
    ids.write_text("\n".join(f"{i}.jpg" for i in range(8)))
    images = root / f"{name}_images"
    images.mkdir()
    from PIL import Image

    for i in range(0, 8, 2):
        Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(images / f"{i}.jpg")
    out = root / f"{name}_resnet152.h5"
    extract_images.run(
        ExtractRequest(images=images, ids_from=ids, out=out, weights="random", dtype="float32", num_workers=0)
    )
    return out


def test_a_multimodal_run_without_any_image_stops_and_says_so(tiny_encoder_dir, tmp_path):
    _jsonl_dataset(tmp_path, "noimg", image_every=0)
    _cache_for(tmp_path, "noimg")
    request = replace(train_request(tmp_path, tiny_encoder_dir, tmp_path / "run", model="mt"), dataset="noimg")
    with pytest.raises(ConfigError, match="none of the 8 training posts has image features"):
        train.run(request)
    assert not (tmp_path / "run").exists()  # a failed start leaves nothing that blocks a rerun


def test_few_images_are_warned_about_with_the_count(tiny_encoder_dir, tmp_path, capsys):
    _jsonl_dataset(tmp_path, "someimg", image_every=4)  # posts 0 and 4 name an image; both exist
    _cache_for(tmp_path, "someimg")
    request = replace(
        train_request(tmp_path, tiny_encoder_dir, tmp_path / "run", model="mt", train={"epochs": 1}), dataset="someimg"
    )
    train.run(request)
    assert "only 2 of 8 training posts (25.0%) have image features" in capsys.readouterr().out


# ---- interrupted, resumed and failed runs -------------------------------------------------------


def test_ctrl_c_names_the_epoch_and_resume_finishes(tiny_root, tiny_encoder_dir, tmp_path):
    run = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "umt.cli",
        "train",
        "--data-root",
        str(tiny_root),
        "--dataset",
        "tiny",
        "--model",
        "bert-crf",
        "--encoder",
        str(tiny_encoder_dir),
        "--epochs",
        "400",
        "--batch-size",
        "8",
        "--set",
        "heads=4",
        "--out",
        str(run),
        "--device",
        "cpu",
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted after epoch" in err and "--resume" in err and "Traceback" not in err
    events = [e["event"] for e in RunDir(run).events()]
    assert events[0] == "start" and events[-1] == "interrupted"
    assert RunDir(run).resumable
    # A plain rerun is told to resume; --resume with other settings is refused, naming them.
    code = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert code.returncode == 2 and "--resume to continue it" in code.stderr
    changed = [*argv[: argv.index("--epochs")], "--epochs", "2", *argv[argv.index("--epochs") + 2 :], "--resume"]
    code = subprocess.run(changed, capture_output=True, text=True, timeout=120)
    assert code.returncode == 2 and "epochs: the run has 400, asked 2" in code.stderr


def test_ctrl_c_while_an_epoch_is_saved_lands_after_the_save(tiny_root, tiny_encoder_dir, tmp_path, monkeypatch):
    """model.safetensors, last.pt and the log line of an epoch are written together: a Ctrl-C between them waits."""
    save_state = RunDir.save_state

    def interrupted_save(self, state):
        os.kill(os.getpid(), signal.SIGINT)  # after model.safetensors, before last.pt
        save_state(self, state)

    monkeypatch.setattr(RunDir, "save_state", interrupted_save)
    run = tmp_path / "run"
    with pytest.raises(TrainingInterrupted, match="interrupted after epoch 1 of 2"):
        train.run(train_request(tiny_root, tiny_encoder_dir, run))
    assert RunDir(run).state()["epoch"] == 0
    assert [e["event"] for e in RunDir(run).events()][-2:] == ["epoch", "interrupted"]


def test_resume_takes_the_runs_own_settings(tiny_root, tiny_encoder_dir, tmp_path):
    run = tmp_path / "run"
    request = train_request(tiny_root, tiny_encoder_dir, run, train={"epochs": 3, "lr": 3e-3})
    stopped = train.run(request, stop_after_epoch=lambda e: e == 0)
    assert stopped == [] and RunDir(run).resumable
    # the helper's epochs 2 and lr 2e-3, as if left at their defaults on the command line (nothing given)
    (metrics,) = train.run(train_request(tiny_root, tiny_encoder_dir, run, resume=True, explicit=frozenset()))
    config = RunDir(run).config()
    assert config.train_cfg.epochs == 3 and config.train_cfg.lr == 3e-3
    assert [e["epoch"] for e in RunDir(run).events() if e["event"] == "epoch"] == [1, 2, 3]
    assert metrics["seed"] == 3


def test_a_run_that_failed_does_not_block_a_rerun(finished_run, tiny_root, tiny_encoder_dir, tmp_path):
    run = tmp_path / "run"
    bad = replace(
        train_request(tiny_root, tiny_encoder_dir, run, model="umt", no_images=True),
        model_cfg=ModelConfig(encoder=str(tiny_encoder_dir), heads=5),
    )
    with pytest.raises(ConfigError, match="heads=5 must divide"):
        train.run(bad)
    assert not run.exists()  # the failed run removed the folder it had created
    run.mkdir()
    for name in ("config.json", "labels.json", "env.json", "log.jsonl"):  # left by a run killed in its first epoch
        (run / name).write_bytes((finished_run / name).read_bytes())
    (metrics,) = train.run(train_request(tiny_root, tiny_encoder_dir, run, model="umt", no_images=True))
    assert metrics["model"] == "umt"


def test_scores_are_fractions_in_files_and_percentages_on_screen(tiny_root, tiny_encoder_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train.run(train_request(tiny_root, tiny_encoder_dir, run, train={"epochs": 1}))
    (epoch,) = [e for e in RunDir(run).events() if e["event"] == "epoch"]
    assert 0.0 <= epoch["dev"]["f1"] <= 1.0
    assert f"dev F1 {100 * epoch['dev']['f1']:.2f}" in capsys.readouterr().out
    assert 0.0 <= RunDir(run).metrics()["test"]["default"]["f1"] <= 1.0


def test_run_files_honour_the_umask(finished_run):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "labels.json", "metrics.json", WEIGHTS, "predictions_test.conll", "env.json"):
        mode = (finished_run / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~umask, (name, oct(mode))
