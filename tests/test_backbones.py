"""Every registered image backbone, end to end with random weights: extract a generated image set,
resume after a crash bit for bit, train the three fusions from the cache, predict on new images
with grids computed as the cache's were; and a cache of one backbone refused by a run of another."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import place_in_hub_cache, write_grid_cache
from PIL import Image
from rich.console import Console

from umt.cache.reader import FeatureCache
from umt.cache.workdir import WorkDir
from umt.pipeline.data.layout import load_split
from umt.pipeline.errors import CacheError, ConfigError
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig
from umt.pipeline.vision.backbones import backbone_names, get_backbone
from umt.stages import extract_images, predict, train
from umt.stages.requests import EvalRequest, ExtractRequest, PredictRequest, TrainRequest

pytestmark = pytest.mark.usefixtures("one_thread")

#: The tiny posts with an image file; the others have none (missing in the cache).
IMAGED = ("train0", "train1", "train2", "train3", "train4", "valid0", "test0", "test1")
FUSIONS = ("umt", "gvatt-bert-crf", "adacan-bert-crf")


class SimulatedCrash(Exception):
    pass


def _picture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (36 + 5 * seed, 52, 3), dtype=np.uint8))  # (H, W, 3)


@pytest.fixture(scope="module")
def imaged_root(tiny_root, tmp_path_factory) -> Path:
    """The tiny dataset with image files for :data:`IMAGED` (and one that is not an image)."""
    root = tmp_path_factory.mktemp("backbones")
    shutil.copytree(tiny_root / "tiny", root / "tiny")
    images = root / "tiny_images"
    images.mkdir()
    for n, image_id in enumerate(IMAGED):
        _picture(n).save(images / f"{image_id}.png")
    (images / "train5.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def _extract(root: Path, name: str, **changes):
    request = ExtractRequest(
        dataset="tiny", data_root=root, backbone=name, weights="random", batch_size=3, num_workers=0
    )
    return extract_images.run(ExtractRequest(**{**vars(request), **changes}), console=Console(file=io.StringIO()))


def _features(path: Path) -> np.ndarray:
    with FeatureCache(path) as cache:
        return np.stack([cache.get(i)[0].numpy() for i in cache.ids])  # (n, blocks, C)


def _train(root: Path, model: str, encoder: Path, out: Path, epochs: int = 1, stop=None, **kw):
    request = TrainRequest(
        dataset="tiny",
        model=model,
        data_root=root,
        out=out,
        model_cfg=ModelConfig(encoder=str(encoder), heads=4),
        train_cfg=TrainConfig(epochs=epochs, batch_size=8, lr=2e-3),
        **kw,
    )
    return train.run(request, console=Console(file=io.StringIO()), stop_after_epoch=stop)


@pytest.mark.parametrize("name", backbone_names())
def test_every_backbone_extracts_resumes_trains_and_predicts(
    name, imaged_root, tiny_encoder_dir, tmp_path, monkeypatch
):
    backbone = get_backbone(name)
    root = tmp_path / "data"
    shutil.copytree(imaged_root, root)
    reference = _extract(root, name, out=tmp_path / "reference.h5").path

    real_write, written = WorkDir.write_chunk, []

    def crash_after_one(self, index, chunk):
        if written:
            raise SimulatedCrash()
        real_write(self, index, chunk)
        written.append(index)

    monkeypatch.setattr(WorkDir, "write_chunk", crash_after_one)
    with pytest.raises(SimulatedCrash):
        _extract(root, name)
    monkeypatch.undo()
    cache = _extract(root, name).path
    assert cache == root / f"tiny_{name}.h5"  # the backbone's default cache
    with FeatureCache(cache) as opened:
        assert opened.shape == backbone.grid and opened.manifest["backbone"] == name
        assert opened.counts()["ok"] == len(IMAGED) and opened.counts()["unreadable"] == 1
        assert opened.manifest["preprocessing"] == backbone.preprocessing
    resumed, uninterrupted = _features(cache), _features(reference)
    assert resumed.shape[1:] == backbone.grid.sequence
    assert resumed.tobytes() == uninterrupted.tobytes()  # bit for bit
    assert np.isfinite(resumed).all() and np.abs(resumed).max() > 0

    for model in FUSIONS:
        run = tmp_path / model
        (metrics,) = _train(root, model, tiny_encoder_dir, run, backbone=name)
        config = json.loads((run / "config.json").read_text())
        assert config["features"]["manifest"]["backbone"] == name
        shape = (config["model_config"]["grid"], config["model_config"]["visual_dim"])
        assert shape == backbone.grid.sequence
        assert 0.0 <= metrics["test"]["default"]["f1"] <= 1.0

    new_images = tmp_path / "new"
    new_images.mkdir()
    _picture(20).save(new_images / "a.png")
    _picture(21).save(new_images / "b.png")
    posts = tmp_path / "posts.jsonl"
    posts.write_text(
        '{"text": "Anna visits Paris", "image": "a.png"}\n{"text": "Bob visits Rome", "image": "b.png"}\n',
        encoding="utf-8",
    )
    grids = tmp_path / "grids"
    out = tmp_path / "out.jsonl"
    predict.run(PredictRequest(tmp_path / "umt", input=posts, images=new_images, image_cache=grids, output=out))
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tokens"] for r in records] == [["Anna", "visits", "Paris"], ["Bob", "visits", "Rome"]]
    stored = sorted(grids.glob("*/*/*.npy"))
    assert len(stored) == 2 and all(np.load(p).shape == backbone.grid.stored for p in stored)


def _random_grids(root: Path, shape) -> dict:
    rng = np.random.default_rng(0)
    ids = [p.image for split in ("train", "valid", "test") for p in load_split(root, "tiny", split)]
    return {i: rng.standard_normal(shape.sequence) if n % 4 else None for n, i in enumerate(ids)}


def test_a_cache_of_one_backbone_is_refused_by_a_run_of_another(tiny_root, tiny_encoder_dir, tmp_path):
    from umt.stages import evaluate

    resnet, vgg = get_backbone("resnet152"), get_backbone("vgg16")
    resnet_cache = write_grid_cache(tmp_path / "resnet.h5", _random_grids(tiny_root, resnet.grid))
    vgg_cache = write_grid_cache(tmp_path / "vgg.h5", _random_grids(tiny_root, vgg.grid), backbone="vgg16")
    run = tmp_path / "run"
    _train(tiny_root, "umt", tiny_encoder_dir, run, features=resnet_cache)
    with pytest.raises(CacheError, match="backbone"):  # evaluated on another backbone's features
        evaluate.run(EvalRequest(run=run, features=vgg_cache), console=Console(file=io.StringIO()))
    stopped = tmp_path / "stopped"
    _train(tiny_root, "umt", tiny_encoder_dir, stopped, epochs=2, stop=lambda epoch: True, features=resnet_cache)
    with pytest.raises(ConfigError, match="visual_dim=2048"):  # resumed on them
        _train(tiny_root, "umt", tiny_encoder_dir, stopped, epochs=2, features=vgg_cache, resume=True)
    with pytest.raises(ConfigError, match="holds vgg16 features, not resnet152"):  # named, and not what is given
        _train(tiny_root, "umt", tiny_encoder_dir, tmp_path / "other", features=vgg_cache, backbone="resnet152")
    with pytest.raises(ConfigError, match="unknown backbone 'vgg61'.*vgg16"):
        ExtractRequest(dataset="tiny", backbone="vgg61")


def test_a_manifest_that_contradicts_its_backbone_is_refused(tiny_root, tiny_encoder_dir, tmp_path):
    """A cache saying vgg16 over 2048 channels was not written by umt: training refuses it."""
    grids = _random_grids(tiny_root, get_backbone("resnet152").grid)
    forged = write_grid_cache(tmp_path / "forged.h5", grids, {"backbone": "vgg16"})
    with pytest.raises(ConfigError, match="vgg16 cache holds 7x7x512"):
        _train(tiny_root, "umt", tiny_encoder_dir, tmp_path / "run", features=forged)


def _small_vit(folder: Path, seed: int) -> Path:
    """A ViT with ViT-B/16's grid (224-pixel images, 16-pixel patches, 768 channels) and one thin
    layer, saved as transformers saves it: config.json and model.safetensors."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(num_hidden_layers=1, intermediate_size=32)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    return folder


def test_vit_weights_from_a_folder_or_a_hub_snapshot_are_used_and_recorded(imaged_root, hub_cache, tmp_path):
    folder = _small_vit(tmp_path / "vit", seed=3)
    from_folder, random, from_hub = (tmp_path / f"{name}.h5" for name in ("folder", "random", "hub"))
    _extract(imaged_root, "vit-b16", weights=str(folder), out=from_folder)
    _extract(imaged_root, "vit-b16", out=random)
    snapshot = place_in_hub_cache(folder, hub_cache, "someone/vit-small", commit="a" * 40)
    _extract(imaged_root, "vit-b16", weights="someone/vit-small", out=from_hub)
    grids = {name: _features(path) for name, path in (("folder", from_folder), ("random", random), ("hub", from_hub))}
    assert grids["folder"].shape[1:] == (196, 768)
    assert np.array_equal(grids["folder"], grids["hub"])  # the same weights, by either way
    assert not np.allclose(grids["folder"], grids["random"])  # and they were the ones used
    with FeatureCache(from_folder) as a, FeatureCache(from_hub) as b:
        local, hub = a.manifest["weights"], b.manifest["weights"]
    assert local["source"] == "folder" and hub == {
        "source": "huggingface",
        "name": "someone/vit-small",
        "revision": snapshot.name,
        "sha256": local["sha256"],
    }


def test_vit_weights_that_are_pickles_or_missing_offline_are_one_line(imaged_root, hub_cache, tmp_path):
    pickled = tmp_path / "pickled"
    _small_vit(tmp_path / "vit", seed=3)
    pickled.mkdir()
    (pickled / "config.json").write_bytes((tmp_path / "vit" / "config.json").read_bytes())
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ConfigError, match="umt loads no pickled weights"):
        _extract(imaged_root, "vit-b16", weights=str(pickled), out=tmp_path / "x.h5")
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=1"):
        _extract(imaged_root, "vit-b16", weights="someone/not-cached", out=tmp_path / "y.h5")
    (tmp_path / "vit" / "config.json").write_text(json.dumps({"model_type": "vit", "patch_size": 32}))
    with pytest.raises(ConfigError, match="not vit-b16's"):  # a config giving another grid
        _extract(imaged_root, "vit-b16", weights=str(tmp_path / "vit"), out=tmp_path / "z.h5")
