"""``umt data stats``: the numbers, the table, and one-line errors for malformed files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import umt.cli as cli
from umt.pipeline.data.layout import SPLITS, load_dataset
from umt.pipeline.data.synthetic import MISSING_PER_SPLIT
from umt.stages import data_stats
from umt.stages.requests import DataStatsRequest

REPO = Path(__file__).resolve().parents[1]

# Twitter-2015's quirks in miniature: OTHER, an I- tag after O, no blank line at the end.
QUIRKY = (
    "IMGID:1\nGeorge\tB-PER\nZimmerman\tI-PER\nat\tO\n#SuperBowl\tB-OTHER\n\n"
    "IMGID:2\nin\tO\nNew\tI-LOC\nYork\tI-LOC\n\u200b\tO\n\n"
    "IMGID:3\nGlobex\tB-ORG\nLisbon\tB-LOC"
)


def make_dataset(root: Path, name: str, train: str | bytes = QUIRKY) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for split in SPLITS:
        (folder / f"{split}.txt").write_text(QUIRKY, encoding="utf-8")
    path = folder / "train.txt"
    path.write_bytes(train.encode("utf-8") if isinstance(train, str) else train)
    return path


def umt(monkeypatch, *args: str) -> int:
    """Run the console entry point in-process; its exit status."""
    monkeypatch.setattr(sys, "argv", ["umt", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return exited.value.code


def test_stats_count_quirky_data_the_seqeval_way(tmp_path, monkeypatch, capsys):
    make_dataset(tmp_path, "mini")
    assert umt(monkeypatch, "data", "stats", "--dataset", "mini", "--data-root", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "entities MISC" in out and "OTHER" not in out
    assert "No image folder" in out
    stats = data_stats.run(DataStatsRequest("mini", data_root=tmp_path))
    train = stats[0]
    assert (train.split, train.posts, train.tokens) == ("train", 3, 10)
    assert dict(train.entities) == {"PER": 1, "MISC": 1, "LOC": 2, "ORG": 1}
    assert train.i_openers == 1
    assert train.image_ids == {"1", "2", "3"} and train.missing_images is None
    assert stats[-1].split == "all" and stats[-1].posts == 9 and stats[-1].i_openers == 3


def test_stats_count_missing_images_of_the_synthetic_sample(synthetic_root, capsys):
    stats = data_stats.run(DataStatsRequest("synth", data_root=synthetic_root))
    data = load_dataset(synthetic_root, "synth")
    for split_stats in stats[:-1]:
        assert split_stats.posts == len(data[split_stats.split])
        assert split_stats.missing_images == MISSING_PER_SPLIT
    assert stats[-1].missing_images == MISSING_PER_SPLIT * len(SPLITS)
    assert "missing image files" in capsys.readouterr().out


def test_stats_with_an_explicit_image_folder(tmp_path, monkeypatch, capsys):
    make_dataset(tmp_path, "mini")
    pictures = tmp_path / "pics"
    pictures.mkdir()
    (pictures / "2.jpg").write_bytes(b"not checked here")
    stats = data_stats.run(DataStatsRequest("mini", data_root=tmp_path, images=pictures))
    assert stats[0].missing_images == 2
    assert umt(monkeypatch, "data", "stats", "--dataset", "mini", "--data-root", str(tmp_path),
               "--images", str(tmp_path / "nope")) == 2  # fmt: skip
    assert "image folder" in capsys.readouterr().err


def test_data_root_comes_from_the_environment(tmp_path, monkeypatch):
    make_dataset(tmp_path, "mini")
    monkeypatch.setenv("UMT_DATA_ROOT", str(tmp_path))
    assert data_stats.run(DataStatsRequest("mini"))[0].posts == 3


MALFORMED = [
    (b"IMGID:1\na\tO\nb\tO\n\nIMGID:2\nc\tO\nd O\n", 7),
    (b"IMGID:1\nGeorge\tB_PER\n", 2),
    (b"", 1),
    (b"IMGID:\nIMGID:\n", 1),
    (b"IMGID:1\nok\tO\n\xc3\x28\tO\n", 3),
    (bytes(range(256)) * 2, 1),
    ("IMGID:1\nHello\tO\n".encode("utf-16"), 1),
    (b"Hello\tO\n", 1),
]


@pytest.mark.parametrize("content, line", MALFORMED)
def test_malformed_file_is_one_line_with_file_and_line(tmp_path, monkeypatch, capsys, content, line):
    path = make_dataset(tmp_path, "bad", train=content)
    assert umt(monkeypatch, "data", "stats", "--dataset", "bad", "--data-root", str(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {path}:{line}: ")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_absent_dataset_is_one_line(tmp_path, monkeypatch, capsys):
    assert umt(monkeypatch, "data", "stats", "--dataset", "nothing", "--data-root", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_the_real_console_script_path_prints_no_traceback(tmp_path):
    path = make_dataset(tmp_path, "bad", train=b"IMGID:1\nGeorge\tB_PER\n")
    done = subprocess.run(
        [sys.executable, "-m", "umt.cli", "data", "stats", "--dataset", "bad", "--data-root", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {path}:2: unknown label 'B_PER'")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_help_documents_every_option(monkeypatch, capsys):
    assert umt(monkeypatch, "data", "stats", "--help") == 0
    out = capsys.readouterr().out
    for option in ("--dataset", "--data-root", "--images", "UMT_DATA_ROOT", "_images"):
        assert option in out
