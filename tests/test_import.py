"""``umt data import``: the layouts users already have, brought into umt's, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from umt.pipeline.data.layout import load_dataset
from umt.pipeline.errors import ConfigError, DataFormatError
from umt.stages import data_import
from umt.stages.requests import DataImportRequest

POSTS = {
    "train": [
        (["Kevin", "Durant", "enters", "Oracle", "Arena"], ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]),
        (["Paris", "is", "lovely"], ["B-LOC", "O", "O"]),
    ],
    "dev": [(["Anna", "in", "Oslo"], ["B-PER", "O", "B-LOC"])],
    "test": [(["Globex", "hires", "Anna"], ["B-ORG", "O", "B-PER"])],
}
COLOURS = {"train": (200, 0, 0), "dev": (0, 200, 0), "test": (0, 0, 200)}


def write_mner_json(root: Path) -> Path:
    """The RiTUAL-UH/multimodal_NER layout: the same image file names in every split, a PNG named .jpg."""
    for split, posts in POSTS.items():
        texts = root / "texts" / split
        images = root / "images" / split
        texts.mkdir(parents=True)
        images.mkdir(parents=True)
        lines = []
        for i, (tokens, labels) in enumerate(posts, start=1):
            lines.append(
                json.dumps(
                    {"id": str(i), "image_id": f"{i}.jpg", "text": " ".join(tokens), "tokens": tokens, "label": labels}
                )
            )
            kind = "PNG" if split == "test" else "JPEG"
            Image.new("RGB", (40, 30), COLOURS[split]).save(images / f"{i}.jpg", format=kind)
        (texts / f"{split}.json").write_text("\n".join(lines) + "\n")
    return root


def test_mner_json_is_imported_with_distinct_image_names(tmp_path):
    source = write_mner_json(tmp_path / "sample")
    result = data_import.run(DataImportRequest(source, "mner-json", "sample", data_root=tmp_path / "data"))
    assert result.posts == {"train": 2, "valid": 1, "test": 1} and result.copied == 4 and not result.missing
    splits = load_dataset(tmp_path / "data", "sample")
    assert splits["train"][0].tokens[:2] == ["Kevin", "Durant"] and splits["train"][0].labels[3] == "B-LOC"
    assert [p.image for p in splits["train"]] == ["train-1.jpg", "train-2.jpg"]
    assert splits["valid"][0].image == "dev-1.jpg"
    images = tmp_path / "data" / "sample_images"
    red = Image.open(images / "train-1.jpg").convert("RGB").getpixel((5, 5))
    blue = Image.open(images / "test-1.jpg").convert("RGB").getpixel((5, 5))
    assert red[0] > 150 and blue[2] > 150  # each split kept its own "1.jpg"
    with pytest.raises(ConfigError, match="already exists"):
        data_import.run(DataImportRequest(source, "mner-json", "sample", data_root=tmp_path / "data"))


def test_mner_json_problems_name_the_source_line(tmp_path):
    source = write_mner_json(tmp_path / "sample")
    dev = source / "texts" / "dev" / "dev.json"
    bad = {"tokens": ["a", "b"], "label": ["O", "S-PER"], "image_id": "2.jpg"}
    dev.write_text(dev.read_text() + json.dumps(bad) + "\n")
    with pytest.raises(DataFormatError, match=rf"{dev}:2: unknown label 'S-PER'"):
        data_import.run(DataImportRequest(source, "mner-json", "x", data_root=tmp_path / "data"))
    assert not (tmp_path / "data" / "x").exists()  # nothing written before the whole source is read
    (source / "texts" / "test" / "test.json").unlink()
    with pytest.raises(ConfigError, match="no test split"):
        data_import.run(DataImportRequest(source, "mner-json", "x", data_root=tmp_path / "data"))


def test_twitter_folder_with_dev_split_and_images(tmp_path):
    source = tmp_path / "release"
    (source / "images").mkdir(parents=True)
    for split, posts in POSTS.items():
        lines = []
        for i, (tokens, labels) in enumerate(posts):
            lines.append(f"IMGID:{split}{i}")
            lines += [f"{t}\t{lab}" for t, lab in zip(tokens, labels, strict=True)] + [""]
            if split != "test":
                Image.new("RGB", (8, 8)).save(source / "images" / f"{split}{i}.jpg")
        (source / f"{split}.txt").write_text("\n".join(lines))
    result = data_import.run(DataImportRequest(source, "twitter", "tw", data_root=tmp_path / "data"))
    assert result.posts == {"train": 2, "valid": 1, "test": 1}
    assert result.copied == 3 and result.missing == ["test0"]
    assert (tmp_path / "data" / "tw_images" / "train1.jpg").is_file()
    assert [p.image for p in load_dataset(tmp_path / "data", "tw")["valid"]] == ["dev0"]


def test_imported_sample_runs_end_to_end(tmp_path, tiny_encoder_dir, capsys):
    from umt.cli import main

    source = write_mner_json(tmp_path / "sample")
    root = tmp_path / "data"
    for argv in (
        ["data", "import", source, "--format", "mner-json", "--name", "sample", "--data-root", root],
        [
            "extract-images",
            "--dataset",
            "sample",
            "--data-root",
            root,
            "--weights",
            "random",
            "--dtype",
            "float32",
            "--strict",
            "--num-workers",
            "0",
        ],
        [
            "train",
            "--dataset",
            "sample",
            "--data-root",
            root,
            "--model",
            "umt",
            "--encoder",
            tiny_encoder_dir,
            "--epochs",
            "1",
            "--set",
            "heads=4",
            "--set",
            "standardize_visual=true",
            "--out",
            tmp_path / "run",
        ],
    ):
        with pytest.raises(SystemExit) as exited:
            main([str(a) for a in argv])
        assert exited.value.code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2 of 2 training posts (100.0%) have image features" in out
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_a_folder_of_datasets_names_the_ones_to_import(tmp_path):
    """A release that bundles two sets (mner-real-sample: twitter_2015/, twitter_2017/) is imported one
    at a time; its parent folder is refused in one line that names both and a command that works."""
    bundle = tmp_path / "mner-real-sample"
    for subset in ("twitter_2015", "twitter_2017"):
        write_mner_json(bundle / subset)
    (bundle / "captions").mkdir()  # a sibling folder that is no dataset is not listed
    request = DataImportRequest(bundle, "mner-json", "rs", data_root=tmp_path / "data")
    with pytest.raises(ConfigError) as error:
        data_import.run(request)
    message = str(error.value)
    assert "\n" not in message
    assert f"{bundle} holds no texts/ folder" in message
    assert "importable sets twitter_2015, twitter_2017" in message and "captions" not in message
    assert f"umt data import {bundle / 'twitter_2015'} --format mner-json" in message
    assert not (tmp_path / "data").exists()  # nothing written
    result = data_import.run(DataImportRequest(bundle / "twitter_2015", "mner-json", "rs", data_root=tmp_path / "data"))
    assert result.posts == {"train": 2, "valid": 1, "test": 1}
    with pytest.raises(ConfigError, match=r"in the mner-json layout, not twitter: pass --format mner-json"):
        data_import.run(DataImportRequest(bundle / "twitter_2017", "twitter", "x", data_root=tmp_path / "data"))
