"""The whole registry, model by model, through the one trainer: train a few steps with and without
images, decode, save, reload from the run directory alone and predict the same; and the
baseline fusions (GVATT, AdaCAN) read an entity's type from the image where the text cannot."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import write_grid_cache

import umt
from umt.cache.grid import GridShape
from umt.pipeline.data.layout import load_split
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.run_dir import RunDir
from umt.pipeline.train_config import TrainConfig
from umt.pipeline.vision.backbones import get_backbone
from umt.stages import evaluate, train
from umt.stages.requests import EvalRequest, TrainRequest

#: Small sizes for every text side: a tiny BERT folder, or random word vectors and small LSTMs.
SMALL = {"heads": 4, "lstm_hidden": 16, "char_dim": 8, "char_hidden": 8, "word_dim": 16, "case_dim": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


def _ids(root: Path, name: str) -> list[str]:
    return [p.image for split in ("train", "valid", "test") for p in load_split(root, name, split)]


@pytest.fixture(scope="module")
def tiny_cache(tiny_root, tmp_path_factory) -> Path:
    """Random grids for the tiny dataset's posts; every fifth image missing."""
    rng = np.random.default_rng(0)
    grids = {i: None if n % 5 == 0 else rng.standard_normal((49, 2048)) for n, i in enumerate(_ids(tiny_root, "tiny"))}
    return write_grid_cache(tmp_path_factory.mktemp("cache") / "tiny.h5", grids)


def _model_cfg(model: str, encoder: Path) -> ModelConfig:
    word_level = get_recipe(model).text_side().kind == "words"
    return ModelConfig(encoder=str(encoder), word_vectors="random" if word_level else "", **SMALL)


def _conll_predictions(run: Path) -> list[list[str]]:
    blocks = (run / RunDir.PREDICTIONS).read_text().strip().split("\n\n")
    return [[line.split("\t")[2] for line in block.splitlines()[1:]] for block in blocks]


CASES = [(m, images) for m in model_names() for images in ((True, False) if get_recipe(m).multimodal else (False,))]


@pytest.mark.parametrize(("model", "images"), CASES, ids=[f"{m}-{'images' if i else 'text'}" for m, i in CASES])
def test_every_model_trains_reloads_and_predicts_the_same(
    model, images, tiny_root, tiny_cache, tiny_encoder_dir, tmp_path
):
    run = tmp_path / "run"
    request = TrainRequest(
        dataset="tiny",
        model=model,
        data_root=tiny_root,
        out=run,
        features=tiny_cache if images else None,
        no_images=not images,
        model_cfg=_model_cfg(model, tiny_encoder_dir),
        train_cfg=TrainConfig(epochs=2, batch_size=8),
    )
    (metrics,) = train.run(request)
    stored = RunDir(run).config()
    recipe = get_recipe(model)
    for key, value in recipe.fixes.items():  # the name's switches and defaults are in the run config
        assert getattr(stored.model_cfg, key) == value
    assert stored.train_cfg.epochs == 2 and stored.train_cfg.batch_size == 8  # given settings beat defaults
    for key, value in recipe.defaults.items():
        if key not in ("epochs", "batch_size", *SMALL):
            config = stored.model_cfg if hasattr(stored.model_cfg, key) else stored.train_cfg
            assert getattr(config, key) == value, key

    trained = umt.load(run, device="cpu")
    assert trained.model.multimodal == recipe.multimodal
    posts = load_split(tiny_root, "tiny", "test")
    features = trained.features() if images else None
    assert trained.predict(posts, features=features) == _conll_predictions(run)
    assert evaluate.run(EvalRequest(run))["default"] == metrics["test"]["default"]


# ---- the image decides the type -----------------------------------------------------------------

TYPES = ("PER", "LOC", "ORG")
NAMES = ("Jordan", "Sydney", "Morgan", "Austin")  # each of them any type: only the image tells
FILLER = ("great", "day", "with", "so", "happy", "the", "we", "love", "new", "see")


def _write_image_typed(root: Path, sizes=(320, 40, 60), seed=0) -> dict:
    """Posts "<filler> NAME <filler>" whose NAME's type is drawn at random and shown only by the image."""
    rng = random.Random(seed)
    folder = root / "typed"
    folder.mkdir(parents=True)
    types = {}
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        lines = []
        for i in range(n):
            kind, name = rng.choice(TYPES), rng.choice(NAMES)
            before = [rng.choice(FILLER) for _ in range(rng.randint(1, 3))]
            after = [rng.choice(FILLER) for _ in range(rng.randint(0, 2))]
            lines.append(f"IMGID:{split}{i}")
            lines += [f"{w}\tO" for w in before] + [f"{name}\tB-{kind}"] + [f"{w}\tO" for w in after] + [""]
            types[f"{split}{i}"] = kind
        (folder / f"{split}.txt").write_text("\n".join(lines), encoding="utf-8")
    return types


def _planted(types: dict, shape: GridShape, seed=0) -> dict:
    """Noise grids of ``shape`` with the type's prototype added to a random third of the blocks."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((len(TYPES), shape.channels))
    grids = {}
    for image, kind in types.items():
        grid = rng.standard_normal(shape.sequence)  # (blocks, C)
        grid[rng.permutation(shape.blocks)[: shape.blocks // 3]] += 2.0 * prototypes[TYPES.index(kind)]
        grids[image] = grid
    return grids


@pytest.fixture(scope="module")
def image_typed(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """The image-typed dataset and a planted cache per backbone: ResNet-152's 7 x 7 x 2048 grids and
    ViT-B/16's 14 x 14 x 768 ones (four times as many blocks, a third of them carrying the type)."""
    root = tmp_path_factory.mktemp("typed")
    types = _write_image_typed(root)
    caches = {}
    for name in ("resnet152", "vit-b16"):
        planted = _planted(types, get_backbone(name).grid)
        caches[name] = (root, write_grid_cache(root / f"typed_{name}.h5", planted, backbone=name))
    return caches


@pytest.mark.parametrize(
    ("fusion_model", "text_twin", "backbone"),
    [
        ("gvatt-hbilstm-crf", "hbilstm-crf", "resnet152"),
        ("adacan-cnn-bilstm-crf", "cnn-bilstm-crf", "resnet152"),
        ("gvatt-bert-crf", "bert-crf", "resnet152"),
        ("adacan-bert-crf", "bert-crf", "resnet152"),
        ("gvatt-bert-crf", "bert-crf", "vit-b16"),
    ],
)
def test_a_fusion_reads_the_type_from_the_image_where_its_text_twin_cannot(
    fusion_model, text_twin, backbone, image_typed, tiny_encoder_dir, tmp_path
):
    root, cache = image_typed[backbone]
    word_level = get_recipe(text_twin).text_side().kind == "words"
    train_cfg = TrainConfig(epochs=12, batch_size=8, lr=0.05 if word_level else 3e-3, head_lr=0.0, seed=3)
    f1 = {}
    for model in (fusion_model, text_twin):
        (metrics,) = train.run(
            TrainRequest(
                dataset="typed",
                model=model,
                data_root=root,
                out=tmp_path / model,
                features=cache,
                model_cfg=_model_cfg(model, tiny_encoder_dir),
                train_cfg=train_cfg,
            )
        )
        f1[model] = metrics["test"]["default"]["f1"]
    assert f1[text_twin] < 0.55, f1  # the span is easy, its type a guess among three
    assert f1[fusion_model] > 0.85, f1


def test_the_span_detection_branch_works_on_the_word_level_side(tiny_root, tiny_cache, tmp_path):
    """UMT's ESD branch and W^c over BiLSTM word states: registered here, trained by the same stage."""
    from umt.pipeline.models.catalog import registered
    from umt.pipeline.models.zoo import WORDS, multimodal_tagger

    with registered(
        "word-umt",
        multimodal_tagger,
        multimodal=True,
        help="test",
        text=WORDS,
        fixes={"esd": True, "char_encoder": "cnn"},
    ):
        run = tmp_path / "run"
        train.run(
            TrainRequest(
                dataset="tiny",
                model="word-umt",
                data_root=tiny_root,
                out=run,
                features=tiny_cache,
                model_cfg=ModelConfig(word_vectors="random", **SMALL),
                train_cfg=TrainConfig(epochs=2, batch_size=8),
            )
        )
        trained = umt.load(run, device="cpu")
        assert trained.model.span_detector is not None and trained.model.conversion is not None
        posts = load_split(tiny_root, "tiny", "test")
        assert trained.predict(posts, features=trained.features()) == _conll_predictions(run)


def test_a_word_level_run_resumes_from_any_folder_without_its_vectors_option(tiny_root, tmp_path, monkeypatch):
    """--resume needs no other option: the vectors path and the vocabulary come from the run."""
    from umt.cli import main

    vectors = tmp_path / "vectors.txt"
    vectors.write_text("".join(f"{w.lower()} 0.{i} 0.5 0.25\n" for i, w in enumerate(["visits", "Paris", "Anna"])))
    monkeypatch.chdir(tmp_path)
    argv = [
        "train",
        "--dataset",
        "tiny",
        "--data-root",
        str(tiny_root),
        "--model",
        "bilstm-crf",
        "--epochs",
        "2",
        "--set",
        "lstm_hidden=8",
        "--out",
        "run",
    ]
    with pytest.raises(SystemExit) as done:
        main([*argv, "--word-vectors", "vectors.txt"])  # a relative path
    assert done.value.code == 0
    stored = RunDir(tmp_path / "run").config()
    assert stored.model_cfg.word_vectors == str(vectors) and stored.text["lowercase"] is True
    full = json.loads((tmp_path / "run" / RunDir.METRICS).read_text())

    def stop_after_first(self, stop_after_epoch):  # a run killed after its first epoch
        return original(self, lambda epoch: epoch == 0)

    from umt.pipeline.training import loop

    original = loop._Loop.epochs
    monkeypatch.setattr(loop._Loop, "epochs", stop_after_first)
    with pytest.raises(SystemExit):
        main([*argv, "--word-vectors", "vectors.txt", "--out", "killed"])
    monkeypatch.undo()
    assert (tmp_path / "killed" / RunDir.LAST).is_file() and not (tmp_path / "killed" / RunDir.METRICS).exists()
    monkeypatch.chdir(tiny_root)  # elsewhere, and without --word-vectors
    with pytest.raises(SystemExit) as done:
        main(
            [
                "train",
                "--dataset",
                "tiny",
                "--data-root",
                str(tiny_root),
                "--model",
                "bilstm-crf",
                "--out",
                str(tmp_path / "killed"),
                "--resume",
            ]
        )
    assert done.value.code == 0
    resumed = json.loads((tmp_path / "killed" / RunDir.METRICS).read_text())
    assert resumed["test"] == full["test"]
