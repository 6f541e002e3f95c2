"""Trust boundaries: what a received run directory, dataset or input file can make umt do.

Each test crafts the artefact or makes the mistake a user could make and checks what must not
happen (code runs, a user's file is deleted, a file outside the data is read or written, a
traceback) and the one line that is printed instead. Crafted caches are in test_untrusted_cache.py,
crafted images and the predict image cache in test_untrusted_images.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_request, write_grid_cache
from PIL import Image

import umt
from umt.cache.lock import lock_path
from umt.cli import main
from umt.pipeline.data.layout import load_split
from umt.pipeline.errors import ConfigError, DataFormatError
from umt.pipeline.inference.trained import read_visual_stats
from umt.pipeline.run_dir import RunDir
from umt.pipeline.text import hf
from umt.pipeline.vision.backbones import get_backbone
from umt.stages import data_import, train
from umt.stages.requests import DataImportRequest

pytestmark = pytest.mark.usefixtures("one_thread")


def umt_cli(argv: list, capsys) -> tuple[int, str, str]:
    """Run ``umt ARGV`` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in argv])
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def one_line(code: int, err: str) -> str:
    """The single error line of a refused command (exit status 2, no traceback)."""
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _one_epoch(root: Path, encoder: Path, out: Path, **kw):
    return train_request(root, encoder, out, train={"epochs": 1}, **kw)


@pytest.fixture(scope="module")
def finished_run(tiny_root, tiny_encoder_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    train.run(_one_epoch(tiny_root, tiny_encoder_dir, out))
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    copy = tmp_path / "received"
    shutil.copytree(finished_run, copy)
    return copy


class _CreatesFile:
    """Unpickling this creates ``path``: a stand-in for any code a pickle can run."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _plant_pickle(path: Path, marker: Path, state: dict) -> None:
    """Write ``state`` with an object that creates ``marker`` when unpickled, and check that an
    unguarded ``torch.load`` really would create it (so the test below cannot pass by accident)."""
    planted = path.with_name("planted.pt")  # torch.load reads a *.safetensors path as safetensors
    torch.save({**state, "payload": _CreatesFile(marker)}, planted)
    torch.load(planted, weights_only=False)
    assert marker.exists()
    marker.unlink()
    planted.replace(path)


# ---- 1. weights that carry no code ----------------------------------------------------------------


def test_weights_are_safetensors_and_nothing_a_run_loads_is_unpickled_freely(finished_run):
    from safetensors import safe_open

    with safe_open(str(finished_run / RunDir.WEIGHTS), framework="pt") as handle:
        assert handle.metadata()["format"] == "umt-weights" and int(handle.metadata()["epoch"]) == 0
    assert not (finished_run / "best.pt").exists()
    source = Path(umt.__file__).parent
    loads = [
        line
        for f in source.rglob("*.py")
        if ".venv" not in f.parts and "tests" not in f.parts
        for line in f.read_text().splitlines()
        if "torch.load(" in line
    ]
    assert loads and all("weights_only=True" in line for line in loads), loads


def test_a_crafted_legacy_checkpoint_runs_no_code_on_eval_predict_and_load(run_copy, tmp_path, capsys):
    """A format-2 run (best.pt) whose pickle would run code: refused by every command that loads it."""
    marker = tmp_path / "pwned"
    weights = RunDir(run_copy).best_weights()
    (run_copy / RunDir.WEIGHTS).unlink()
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "format_version": 2}))
    _plant_pickle(run_copy / "best.pt", marker, {"model": weights, "epoch": 0, "dev_f1": 0.5})
    err = one_line(*umt_cli(["eval", run_copy], capsys)[::2])
    assert "best.pt holds objects other than tensors" in err and "can run code" in err
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"text": "Anna visits Paris"}\n')
    one_line(*umt_cli(["predict", run_copy, "--input", posts], capsys)[::2])
    with pytest.raises(ConfigError, match="objects other than tensors"):
        umt.load(run_copy)
    assert not marker.exists()


def test_a_legacy_run_still_loads_through_the_weights_only_reader(run_copy, finished_run, capsys):
    weights = RunDir(run_copy).best_weights()
    (run_copy / RunDir.WEIGHTS).unlink()
    torch.save({"model": weights, "epoch": 0, "dev_f1": 0.5}, run_copy / "best.pt")
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "format_version": 2}))
    words = [["Anna", "visits", "Paris", "!"], ["great", "day", "Chloe", "visits", "Oslo"]]
    assert umt.load(run_copy).predict(words) == umt.load(finished_run).predict(words)


def test_a_crafted_training_state_runs_no_code_on_resume(tiny_root, tiny_encoder_dir, tmp_path):
    run = tmp_path / "run"
    train.run(train_request(tiny_root, tiny_encoder_dir, run), stop_after_epoch=lambda e: e == 0)
    state = RunDir(run).state()
    marker = tmp_path / "pwned"
    _plant_pickle(run / RunDir.LAST, marker, state)
    with pytest.raises(ConfigError, match="last.pt holds objects other than tensors"):
        train.run(train_request(tiny_root, tiny_encoder_dir, run, resume=True))
    assert not marker.exists()
    assert (run / RunDir.LAST).is_file()  # the refused run is left as it was


def test_weights_in_place_of_safetensors_that_are_a_pickle_are_refused(run_copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    _plant_pickle(run_copy / RunDir.WEIGHTS, marker, {})
    err = one_line(*umt_cli(["eval", run_copy], capsys)[::2])
    assert "model.safetensors cannot be read" in err and not marker.exists()


# ---- 2. a run directory is the only thing umt train removes --------------------------------------


def _train_argv(root: Path, encoder: Path, out: Path, *extra) -> list:
    return [
        "train",
        "--dataset",
        "tiny",
        "--data-root",
        root,
        "--model",
        "bert-crf",
        "--encoder",
        encoder,
        "--set",
        "heads=4",
        "--epochs",
        "1",
        "--out",
        out,
        *extra,
    ]


@pytest.mark.parametrize("extra", [(), ("--overwrite",)])
def test_out_at_a_folder_with_a_users_files_deletes_nothing(tiny_root, tiny_encoder_dir, tmp_path, capsys, extra):
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "notes.txt").write_text("years of work")
    (thesis / "chapters" / "one.tex").write_text("\\chapter{One}")
    err = one_line(*umt_cli(_train_argv(tiny_root, tiny_encoder_dir, thesis, *extra), capsys)[::2])
    assert "holds files umt did not write (chapters, notes.txt)" in err
    assert sorted(p.name for p in thesis.rglob("*")) == ["chapters", "notes.txt", "one.tex"]


def test_a_run_folder_with_a_users_file_is_not_replaced_even_with_overwrite(
    run_copy, tiny_root, tiny_encoder_dir, capsys
):
    (run_copy / "my-analysis.ipynb").write_text("{}")
    before = sorted(p.name for p in run_copy.iterdir())
    err = one_line(*umt_cli(_train_argv(tiny_root, tiny_encoder_dir, run_copy, "--overwrite"), capsys)[::2])
    assert "my-analysis.ipynb" in err
    assert sorted(p.name for p in run_copy.iterdir()) == before


def test_overwrite_removes_a_runs_files_by_name_and_never_a_file_it_did_not_write(
    run_copy, tiny_root, tiny_encoder_dir, capsys
):
    listed = json.loads((run_copy / "text" / RunDir.TEXT_LISTING).read_text())
    assert listed and "config.json" in listed  # what the text side wrote, the only names ever removed from text/
    mine = run_copy / "text" / "my-tokens.txt"
    mine.write_text("mine")
    err = one_line(*umt_cli(_train_argv(tiny_root, tiny_encoder_dir, run_copy, "--overwrite"), capsys)[::2])
    assert "holds files umt did not write (text/my-tokens.txt)" in err and mine.exists()
    mine.unlink()
    code, _, err = umt_cli(_train_argv(tiny_root, tiny_encoder_dir, run_copy, "--overwrite"), capsys)
    assert code in (None, 0), err
    assert json.loads((run_copy / "text" / RunDir.TEXT_LISTING).read_text()) == listed


def test_overwrite_of_unfinished_extraction_work_keeps_a_users_file(tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.jpg")
    out = tmp_path / "feats.h5"
    partial = tmp_path / "feats.h5.partial"
    partial.mkdir()
    (partial / "plan.json").write_text('{"ids": ["x"], "chunk_size": 9, "shard": [1, 1], "fingerprint": {}}')
    (partial / "chunk-000000.npz").write_bytes(b"an old chunk")
    (partial / "notes.txt").write_text("mine")
    code, _, err = umt_cli(
        ["extract-images", "--images", images, "--out", out, "--weights", "random", "--overwrite"], capsys
    )
    assert code in (None, 0), err
    assert out.is_file() and sorted(p.name for p in partial.iterdir()) == ["notes.txt"]


def test_import_overwrite_removes_only_the_files_the_import_listed(tmp_path, capsys):
    root = tmp_path / "data"
    release = _twitter_release(tmp_path / "release", "pic")
    Image.new("RGB", (8, 8)).save(release / "images" / "pic.jpg")
    data_import.run(DataImportRequest(release, "twitter", "tw", data_root=root))
    assert json.loads((root / "tw" / "import.json").read_text())["files"] == {
        "dataset": ["test.txt", "train.txt", "valid.txt"],
        "images": ["pic.jpg"],
    }
    (root / "tw_images" / "holiday.jpg").write_bytes(b"mine")
    err = one_line(
        *umt_cli(
            ["data", "import", release, "--format", "twitter", "--name", "tw", "--data-root", root, "--overwrite"],
            capsys,
        )[::2]
    )
    assert "hold files the import did not write (tw_images/holiday.jpg)" in err
    assert (root / "tw_images" / "holiday.jpg").read_bytes() == b"mine"
    (root / "tw_images" / "holiday.jpg").unlink()
    (root / "tw_images" / "pic.jpg").unlink()  # as if the import had been killed before copying it
    data_import.run(DataImportRequest(release, "twitter", "tw", data_root=root, overwrite=True))
    assert (root / "tw_images" / "pic.jpg").is_file()


def test_a_failed_run_removes_only_the_files_it_wrote(tiny_root, tiny_encoder_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()

    def failing_fit(model, train_set, dev, text, vocab, cfg, run, **kw):
        (run.path / "notes.txt").write_text("the user's, written while the run trained")
        raise RuntimeError("the GPU fell over")

    monkeypatch.setattr("umt.pipeline.training.run.fit", failing_fit)
    with pytest.raises(RuntimeError, match="fell over"):
        train.run(_one_epoch(tiny_root, tiny_encoder_dir, out))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_a_run_folder_created_by_a_failed_run_is_removed(tiny_root, tiny_encoder_dir, tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    monkeypatch.setattr("umt.pipeline.training.run.fit", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError):
        train.run(_one_epoch(tiny_root, tiny_encoder_dir, out))
    assert not out.exists()


def test_overwrite_replaces_only_umt_caches_and_eval_never_writes_over_its_inputs(
    finished_run, tiny_root, tmp_path, capsys
):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.jpg")
    document = tmp_path / "thesis.tex"
    document.write_text("\\chapter{One}")
    err = one_line(
        *umt_cli(
            ["extract-images", "--images", images, "--out", document, "--weights", "random", "--overwrite"], capsys
        )[::2]
    )
    assert "is not a umt feature cache; umt replaces only its own caches" in err
    err = one_line(*umt_cli(["cache", "merge", document, tmp_path / "x.shard-1-of-1.h5", "--overwrite"], capsys)[::2])
    assert "is not a umt feature cache" in err and document.read_text() == "\\chapter{One}"
    test_split = tiny_root / "tiny" / "test.txt"
    before = test_split.read_text()
    err = one_line(*umt_cli(["eval", finished_run, "--data", test_split, "--out", test_split], capsys)[::2])
    assert "is the --data file" in err and test_split.read_text() == before
    err = one_line(*umt_cli(["eval", finished_run, "--out", finished_run / "metrics.json"], capsys)[::2])
    assert "one of the run's own files" in err


HOLD_RUN = textwrap.dedent(
    """
    import sys, time
    from umt.pipeline.run_dir import RunDir
    with RunDir(sys.argv[1]).claimed(resume=False, overwrite=False):
        print("held", flush=True)
        time.sleep(120)
    """
)


def test_a_second_train_on_the_same_out_fails_at_once_naming_the_holder(tiny_root, tiny_encoder_dir, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_RUN, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = one_line(*umt_cli(_train_argv(tiny_root, tiny_encoder_dir, out), capsys)[::2])
        assert f"{out} is being trained by process {holder.pid}" in err
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of the holder's touched
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_planted_as_a_link_truncates_nothing(tiny_root, tiny_encoder_dir, tmp_path, capsys):
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    err = one_line(*umt_cli(_train_argv(tiny_root, tiny_encoder_dir, out), capsys)[::2])
    assert "is a symbolic link" in err and victim.read_text() == "keep me"
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "a.jpg")
    cache = tmp_path / "feats.h5"
    lock_path(cache).symlink_to(victim)
    extract = ["extract-images", "--images", images, "--out", cache, "--weights", "random"]
    err = one_line(*umt_cli(extract, capsys)[::2])
    assert "is a symbolic link" in err and victim.read_text() == "keep me"
    lock_path(cache).unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "feats.h5.partial").symlink_to(elsewhere)  # the work folder: writes would go there
    assert "is a link or a file, not umt's work folder" in one_line(*umt_cli(extract, capsys)[::2])
    assert list(elsewhere.iterdir()) == []
    (tmp_path / "feats.h5.partial").unlink()
    shard = tmp_path / "one.h5"
    code, _, err = umt_cli([*extract[:4], shard, "--weights", "random", "--shard", "1/1"], capsys)
    assert code in (None, 0), err
    (tmp_path / "merged.h5.merging").symlink_to(victim)  # the merge's temporary file
    code, _, err = umt_cli(["cache", "merge", tmp_path / "merged.h5", tmp_path / "one.shard-1-of-1.h5"], capsys)
    assert code in (None, 0), err
    assert victim.read_text() == "keep me" and (tmp_path / "merged.h5").is_file()


def test_a_run_file_planted_as_a_link_is_neither_read_nor_written_through(run_copy, tmp_path, capsys):
    victim = tmp_path / "bashrc"
    victim.write_text("alias ls='ls --color'\n")
    (run_copy / "log.jsonl").unlink()
    (run_copy / "log.jsonl").symlink_to(victim)
    with pytest.raises(ConfigError, match="log.jsonl: it is a symbolic link"):
        RunDir(run_copy).log({"event": "x"})
    assert victim.read_text() == "alias ls='ls --color'\n"
    (run_copy / "config.json").unlink()
    (run_copy / "config.json").symlink_to(victim)
    assert "config.json: it is a symbolic link" in one_line(*umt_cli(["eval", run_copy], capsys)[::2])


# ---- 3. paths from data stay inside their place ---------------------------------------------------


def _twitter_release(folder: Path, image_id: str) -> Path:
    (folder / "images").mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text(f"IMGID:{split}0\nAnna\tB-PER\n\nIMGID:{image_id}\nParis\tB-LOC\n")
    return folder


@pytest.mark.parametrize("image_id", ["../other/train.txt", "/etc/passwd", "a\\..\\b"])
def test_an_image_id_that_is_a_path_is_refused_with_its_file_and_line(tmp_path, image_id):
    source = _twitter_release(tmp_path / "release", image_id)
    (tmp_path / "data" / "other").mkdir(parents=True)
    (tmp_path / "data" / "other" / "train.txt").write_text("someone else's data")
    with pytest.raises(DataFormatError, match=r"train.txt:4: image id .* (contains|is an absolute)"):
        data_import.run(DataImportRequest(source, "twitter", "mine", data_root=tmp_path / "data"))
    assert (tmp_path / "data" / "other" / "train.txt").read_text() == "someone else's data"
    assert not (tmp_path / "data" / "mine").exists()


def test_import_never_overwrites_its_own_source_or_a_dataset_it_did_not_make(tmp_path, capsys):
    root = tmp_path / "data"
    source = _twitter_release(root / "tw", "pic")
    err = one_line(
        *umt_cli(
            ["data", "import", source, "--format", "twitter", "--name", "tw", "--data-root", root, "--overwrite"],
            capsys,
        )[::2]
    )
    assert "overlap" in err and (source / "train.txt").is_file()
    release = _twitter_release(tmp_path / "release", "pic")
    err = one_line(
        *umt_cli(
            ["data", "import", release, "--format", "twitter", "--name", "tw", "--data-root", root, "--overwrite"],
            capsys,
        )[::2]
    )
    assert "was not made by umt data import" in err and (source / "train.txt").is_file()
    # a dataset an import made is replaced by the next import with --overwrite
    data_import.run(DataImportRequest(release, "twitter", "copy", data_root=root))
    data_import.run(DataImportRequest(release, "twitter", "copy", data_root=root, overwrite=True))
    assert json.loads((root / "copy" / "import.json").read_text())["format"] == "twitter"


def test_an_image_linked_from_outside_the_image_folder_is_not_read(tmp_path, capsys):
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(secret)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (8, 8)).save(images / "own.png")
    (images / "leak.png").symlink_to(secret)
    ids = tmp_path / "ids.txt"
    ids.write_text("own.png\nleak.png\n")
    out = tmp_path / "feats.h5"
    code, stdout, _ = umt_cli(
        ["extract-images", "--images", images, "--ids-from", ids, "--out", out, "--weights", "random"], capsys
    )
    assert code is None or code == 0
    from umt.cache.reader import FeatureCache

    with FeatureCache(out) as cache:
        assert cache.status("own.png") == "ok" and cache.status("leak.png") == "unreadable"
        assert "outside the image folder" in cache.reason("leak.png")
    ids.write_text("own.png\n../secret.png\n")
    err = one_line(
        *umt_cli(
            [
                "extract-images",
                "--images",
                images,
                "--ids-from",
                ids,
                "--out",
                tmp_path / "b.h5",
                "--weights",
                "random",
            ],
            capsys,
        )[::2]
    )
    assert "ids.txt:2: image id '../secret.png' contains '..'" in err


def test_a_dataset_whose_jsonl_names_an_absolute_image_is_refused(tmp_path, capsys):
    folder = tmp_path / "data" / "mine"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.jsonl").write_text(
            '{"tokens": ["Anna"], "labels": ["B-PER"], "image": "a"}\n'
            '{"tokens": ["Paris"], "labels": ["B-LOC"], "image": "/home/you/.ssh/id_rsa"}\n'
        )
    err = one_line(*umt_cli(["data", "stats", "--dataset", "mine", "--data-root", tmp_path / "data"], capsys)[::2])
    assert "train.jsonl:2: 'image' '/home/you/.ssh/id_rsa' is an absolute path" in err


# ---- predict: a run that reads images -------------------------------------------------------------


@pytest.fixture(scope="module")
def imaged_run(tiny_root, tiny_encoder_dir, tmp_path_factory) -> dict:
    """A tiny UMT whose cache was computed by the random ResNet-152 (all zeros but a few grids)."""
    resnet152 = get_backbone("resnet152")
    base = tmp_path_factory.mktemp("imaged")
    grids = {p.image: None for split in ("train", "valid", "test") for p in load_split(tiny_root, "tiny", split)}
    rng = np.random.default_rng(0)
    for image_id in ("train0", "train1", "train2"):
        grids[image_id] = rng.standard_normal((49, 2048)).astype(np.float32)
    settings = {
        "weights": resnet152.weights_identity("random"),
        "preprocessing": resnet152.preprocessing,
        "dtype": "float32",
    }
    cache = write_grid_cache(base / "tiny.h5", grids, settings)
    run = base / "run"
    train.run(_one_epoch(tiny_root, tiny_encoder_dir, run, model="umt", features=cache))
    images = base / "images"
    images.mkdir()
    Image.new("RGB", (20, 16), (0, 90, 200)).save(images / "sky.png")
    return {"run": run, "images": images, "base": base}


def _predict(r: dict, capsys, lines: list[str], tmp_path: Path, *extra) -> tuple[int, str, list[dict]]:
    posts = tmp_path / "posts.jsonl"
    posts.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    code, _, err = umt_cli(
        [
            "predict",
            r["run"],
            "--input",
            posts,
            "--images",
            r["images"],
            "--output",
            out,
            "--image-cache",
            tmp_path / "grids",
            *extra,
        ],
        capsys,
    )
    tagged = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, err, tagged


def test_predict_resolves_images_only_inside_the_image_folders(imaged_run, tmp_path, capsys):
    secret = imaged_run["base"] / "secret.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(secret)
    (imaged_run["images"] / "link.png").symlink_to(secret)
    lines = [
        '{"text": "Anna visits Paris", "image": "sky.png"}',
        json.dumps({"text": "Anna visits Paris", "image": str(secret)}),
        '{"text": "Anna visits Paris", "image": "../secret.png"}',
        '{"text": "Anna visits Paris", "image": "link.png"}',
    ]
    code, err, tagged = _predict(imaged_run, capsys, lines, tmp_path)
    assert code in (None, 0) and [t["line"] for t in tagged] == [1]
    assert "posts.jsonl:2: image id" in err and "is an absolute path" in err and "--any-image-path" in err
    assert "posts.jsonl:3: image id '../secret.png' contains '..'" in err
    assert "posts.jsonl:4:" in err and "outside the image folder" in err
    code, err, tagged = _predict(imaged_run, capsys, lines[:2], tmp_path, "--any-image-path")
    assert [t["line"] for t in tagged] == [1, 2]


def test_a_caption_linked_from_outside_the_folder_is_not_read(finished_run, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("Anna's password is hunter2")
    folder = tmp_path / "posts"
    folder.mkdir()
    for name in ("a", "b"):
        Image.new("RGB", (8, 8)).save(folder / f"{name}.png")
    (folder / "a.txt").symlink_to(secret)
    (folder / "b.txt").write_text("Chloe visits Oslo")
    code, out, err = umt_cli(["predict", finished_run, "--input", folder], capsys)
    assert code in (None, 0) and [json.loads(line)["id"] for line in out.splitlines()] == ["b.png"]
    assert "a.txt: a link to a file outside" in err and "hunter2" not in out


def test_predict_refuses_an_oversized_image_before_reading_it(imaged_run, tmp_path, capsys, monkeypatch):
    big = imaged_run["images"] / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1200, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 1 << 20
    lines = ['{"text": "Anna visits Paris", "image": "big.png"}', '{"text": "Anna visits Oslo"}']
    code, err, tagged = _predict(imaged_run, capsys, lines, tmp_path, "--max-image-mb", "1")
    assert [t["line"] for t in tagged] == [2] and "over the 1.0 MiB limit" in err


def test_a_run_with_remote_code_in_its_text_side_runs_none_of_it(run_copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    text = run_copy / "text"
    (text / "evil.py").write_text(f"open({str(marker)!r}, 'w')\nfrom transformers import BertConfig as EvilConfig\n")
    config = json.loads((text / "config.json").read_text())
    mapped = {**config, "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilConfig"}}
    (text / "config.json").write_text(json.dumps(mapped))
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"text": "Anna visits Paris"}\n')
    code, out, err = umt_cli(["predict", run_copy, "--input", posts], capsys)  # bert: its own code is used
    assert code in (None, 0) and json.loads(out)["tokens"] == ["Anna", "visits", "Paris"]
    del mapped["model_type"]
    (text / "config.json").write_text(json.dumps(mapped))
    for tokenizer_config in text.glob("tokenizer_config.json"):
        tokenizer_config.write_text(
            json.dumps({**json.loads(tokenizer_config.read_text()), "auto_map": {"AutoTokenizer": ["evil.Tok", None]}})
        )
    err = one_line(*umt_cli(["predict", run_copy, "--input", posts], capsys)[::2])
    assert "text" in err and not marker.exists()


# ---- 4. crafted run files --------------------------------------------------------------------------


CRAFTED_RUN_FILES = [
    ("config.json", "[" * 100_000, "not valid JSON (nested too deeply)"),
    ("config.json", '{"format_version": 1' + "0" * 5000 + "}", "not valid JSON (Exceeds the limit (4300 digits)"),
    ("config.json", None, "'text' must be a dict, found list"),
    ("labels.json", '{"labels": [1, 2]}', "damaged label vocabulary"),
    ("labels.json", '{"labels": ["O", "B-PER"]}', "damaged label vocabulary"),
    ("text/tokenizer.json", '{"version": 1, garbage', "cannot load a tokenizer"),
    ("config.json", b"\xff\xfe{}", "not UTF-8 text"),
]


@pytest.mark.parametrize("name, content, words", CRAFTED_RUN_FILES)
def test_a_crafted_run_file_is_one_line_and_the_report_still_runs(run_copy, tmp_path, capsys, name, content, words):
    if content is None:  # a config whose text side is a list
        content = json.dumps({**json.loads((run_copy / name).read_text()), "text": ["abc"]})
    target = run_copy / name
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert words in one_line(*umt_cli(["eval", run_copy], capsys)[::2])
    code, out, err = umt_cli(["report", "--runs", run_copy.parent], capsys)
    assert code in (None, 0) and "Traceback" not in err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("craft", ["labels", "hidden_size"])
def test_sizes_a_crafted_run_names_are_checked_before_anything_is_allocated(run_copy, craft):
    """40 GB of CRF transitions, or a 10^6-wide encoder: refused against the weights' shapes first."""
    if craft == "labels":
        types = [f"T{i:06d}" for i in range(50_000)]
        labels = ["O", *(f"{p}-{t}" for t in types for p in ("B", "I"))]
        (run_copy / "labels.json").write_text(json.dumps({"labels": labels}))
    else:
        config = json.loads((run_copy / "text" / "config.json").read_text())
        (run_copy / "text" / "config.json").write_text(json.dumps({**config, "hidden_size": 1_048_576}))
    with pytest.raises(ConfigError, match="model.safetensors does not fit the model its config and labels describe"):
        umt.load(run_copy)


def test_a_crafted_unfinished_extraction_is_one_line(tmp_path, capsys):
    partial = tmp_path / "feats.h5.partial"
    partial.mkdir()
    for plan in ('{"ids": "abc", "shard": [1, 1], "chunk_size": 2, "fingerprint": {}}', "[" * 100_000):
        (partial / "plan.json").write_text(plan)
        assert "plan.json is damaged" in one_line(*umt_cli(["cache", "info", tmp_path / "feats.h5"], capsys)[::2])


def test_crafted_visual_statistics_are_refused(run_copy):
    from safetensors.torch import save_file

    save_file({"mean": torch.full((2048,), float("nan")), "std": torch.ones(2048)}, run_copy / RunDir.VISUAL_STATS)
    with pytest.raises(ConfigError, match="damaged visual statistics .*non-finite"):
        read_visual_stats(RunDir(run_copy))


# ---- 5. no silent losses, no dead ends -------------------------------------------------------------


def test_unknown_keys_in_predict_input_get_a_did_you_mean(finished_run, tmp_path, capsys):
    posts = tmp_path / "posts.jsonl"
    posts.write_bytes(
        b'{"text": "Anna visits Paris", "img": "a.jpg"}\n{"text": "Anna", "image_id": "1"}\n'
        b'{"text": "Chloe visits Oslo"}\n{"text": "caf\xe9 in Paris"}\n'
    )
    code, out, err = umt_cli(["predict", finished_run, "--input", posts], capsys)
    assert code in (None, 0) and [json.loads(line)["line"] for line in out.splitlines()] == [3]
    assert "posts.jsonl:1: unknown key 'img' (did you mean 'image'?)" in err
    assert "posts.jsonl:2: unknown key 'image_id' (did you mean 'image'?)" in err
    assert "posts.jsonl:4: not UTF-8 text" in err


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("notes.txt", "Anna visits Paris\nChloe visits Oslo\n", "notes.txt:1: not valid JSON"),
        ("posts.csv", "message,author\nAnna visits Paris,me\n", "unknown column 'message'"),
        ("empty.jsonl", "", "no posts to tag: the input is empty"),
    ],
)
def test_an_input_of_which_nothing_can_be_tagged_is_an_error(finished_run, tmp_path, capsys, name, content, words):
    posts = tmp_path / name
    posts.write_text(content)
    out = tmp_path / "out.jsonl"
    err = one_line(
        *umt_cli(
            [
                "predict",
                finished_run,
                "--input",
                posts,
                "--format",
                "csv" if name.endswith(".csv") else "jsonl",
                "--output",
                out,
            ],
            capsys,
        )[::2]
    )
    assert words in err and not out.exists() and not (tmp_path / "out.jsonl.partial").exists()
    folder = tmp_path / "no-images"
    folder.mkdir()
    assert "nothing to tag" in one_line(*umt_cli(["predict", finished_run, "--input", folder], capsys)[::2])


def test_predict_input_that_used_to_end_in_a_traceback(finished_run, tmp_path, capsys):
    posts = tmp_path / "posts.jsonl"
    posts.write_text("[" * 100_000 + '\n{"text": "Anna visits Paris", "id": 1' + "0" * 5000 + '}\n{"text": "Anna"}\n')
    code, out, err = umt_cli(["predict", finished_run, "--input", posts], capsys)
    assert code in (None, 0) and "posts.jsonl:1: not valid JSON (nested too deeply)" in err
    assert "posts.jsonl:2: not valid JSON (Exceeds the limit (4300 digits)" in err
    table = tmp_path / "posts.csv"
    table.write_text("id,text\n1," + "x" * 200_000 + "\n2,Anna visits Paris\n")
    code, out, err = umt_cli(["predict", finished_run, "--input", table], capsys)
    assert code in (None, 0) and "posts.csv:2: not a CSV row (field larger than field limit" in err
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["2"]
    err = one_line(*umt_cli(["predict", finished_run, "--input", posts, "--output", tmp_path], capsys)[::2])
    assert "is a folder" in err
    err = one_line(*umt_cli(["predict", finished_run, "--input", posts, "--output", posts], capsys)[::2])
    assert "is the input file" in err and posts.read_text().startswith("[[[")
    (tmp_path / "out.jsonl.partial").symlink_to(posts)
    err = one_line(
        *umt_cli(["predict", finished_run, "--input", table, "--output", tmp_path / "out.jsonl"], capsys)[::2]
    )
    assert "is a symbolic link" in err and posts.read_text().startswith("[[[")


def test_predict_into_a_closed_pipe_ends_in_one_line(finished_run, tmp_path):
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"text": "Anna visits Paris"}\n' * 3000)
    command = (
        f"{sys.executable} -m umt.cli predict {finished_run} --input {posts} --batch-size 64 | head -c 10 "
        "> /dev/null; exit ${PIPESTATUS[0]}"
    )
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert "broken pipe" in done.stderr


def test_an_unwritable_image_cache_is_one_line(imaged_run, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"text": "Anna visits Paris", "image": "sky.png"}\n')
    err = one_line(
        *umt_cli(
            [
                "predict",
                imaged_run["run"],
                "--input",
                posts,
                "--images",
                imaged_run["images"],
                "--image-cache",
                blocker / "cache",
            ],
            capsys,
        )[::2]
    )
    assert "cannot use the image cache folder" in err and "--image-cache DIR" in err


def test_not_a_run_names_the_runs_below(finished_run, tmp_path, capsys):
    runs = tmp_path / "runs" / "rs17" / "umt"
    for seed in ("seed1", "seed2"):
        shutil.copytree(finished_run, runs / seed)
    err = one_line(*umt_cli(["predict", runs], capsys)[::2])
    assert f"the run directories below it: {runs / 'seed1'}, {runs / 'seed2'}" in err


@pytest.mark.parametrize("name, close", [("UMT", "umt"), ("bert_crf", "bert-crf"), ("bert-cfr", "bert-crf")])
def test_an_unknown_model_name_gets_a_did_you_mean(tiny_root, capsys, name, close):
    err = one_line(*umt_cli(["train", "--dataset", "tiny", "--data-root", tiny_root, "--model", name], capsys)[::2])
    assert f"unknown model {name!r} (did you mean {close!r}?); registered models:" in err


def test_a_missing_dataset_lists_those_the_data_root_holds(tiny_root, capsys):
    err = one_line(*umt_cli(["train", "--dataset", "tiyn", "--data-root", tiny_root], capsys)[::2])
    assert "(did you mean 'tiny'?)" in err and "datasets there: tiny" in err


def test_the_python_api_names_python_arguments(imaged_run):
    tagger = umt.load(imaged_run["run"])
    with pytest.raises(ConfigError, match=r"texts\[0\]: image 'sky.png' not found .*; pass images_dir="):
        tagger.tag(["Anna visits Paris"], images=["sky.png"])
    with pytest.raises(
        ConfigError,
        match=r"texts\[0\]: image id '/etc/hostname' is an absolute path.*"
        r"any_image_path=True",
    ):
        tagger.tag(["Anna visits Paris"], images=["/etc/hostname"], images_dir=imaged_run["images"])


def test_the_offline_hint_names_hf_and_comes_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.is_offline_mode", lambda: False)
    monkeypatch.setattr(hf, "hub_reachable", lambda timeout=hf.HUB_PROBE_SECONDS: False)
    with pytest.raises(ConfigError, match=r"cannot be reached; on a machine with network run `hf download "):
        hf.load_tokenizer("someone/unreachable-model")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # the discard port: closed here
    assert hf.hub_reachable() is False


# ---- 6. output: data is never markup ---------------------------------------------------------------


def test_ids_and_messages_with_brackets_are_printed_as_they_are(tmp_path, capsys):
    images = tmp_path / "images"
    (images / "[").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(images / "photo[draft].jpg")
    (images / "[" / "x].jpg").write_bytes(b"not an image")  # the id "[/x].jpg": a closing markup tag
    ids = tmp_path / "ids.txt"
    ids.write_text("photo[draft].jpg\n[/x].jpg\n[bold]gone.jpg\n")
    out = tmp_path / "feats[x].h5"
    code, stdout, err = umt_cli(
        ["extract-images", "--images", images, "--ids-from", ids, "--out", out, "--weights", "random"], capsys
    )
    assert code in (None, 0), err
    assert "[/x].jpg" in stdout and "[bold]gone.jpg" in stdout and "feats[x].h5" in stdout
    code, stdout, err = umt_cli(["cache", "info", out], capsys)
    assert code in (None, 0) and "[/x].jpg" in stdout and "[bold]gone.jpg" in stdout, err
    assert "feats[x].h5" in stdout
    folder = tmp_path / "data" / "br"
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (folder / f"{split}.txt").write_text("IMGID:photo[draft]\nAnna\tB-[/x]\n\nIMGID:[b]\nParis\tB-LOC\n")
    code, stdout, err = umt_cli(["data", "stats", "--dataset", "br", "--data-root", tmp_path / "data"], capsys)
    assert code in (None, 0) and "[/x]" in stdout, err


def test_explain_file_names_are_sanitised():
    from umt.stages.predict import _slug

    assert _slug("../../etc/passwd") == "etc_passwd" and _slug("[/x]") == "x" and _slug("") == "entity"
    assert len(_slug("A" * 500)) == 40
