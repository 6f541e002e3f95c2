"""Fixtures shared by the test modules: a tiny local encoder and a small synthetic dataset."""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import zlib
from pathlib import Path

import pytest

from umt.pipeline.data.synthetic import generate_synthetic
from umt.pipeline.models.tiny import build_tiny_encoder

#: Whole-word entries of the tiny vocabulary; any other word is spelled in single characters.
TINY_WORDS = ("Great", "to", "see", "today", "in", "the", "Jordan", "Paris", "Sydney", "Globex")
SYNTHETIC_NAME = "synth"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and two threads slow down 20x on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer, 48-wide BERT with a cased WordPiece vocabulary, as a Hugging Face folder."""
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny_encoder"), words=TINY_WORDS)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root holding ``synth/{train,valid,test}.txt`` and ``synth_images/`` (default sizes).

    Session-wide and shared: treat it as read-only.
    """
    root = tmp_path_factory.mktemp("synthetic_root")
    generate_synthetic(root, SYNTHETIC_NAME, seed=0)
    return root


PEOPLE = ["Anna", "Brian", "Chloe", "Dmitri", "Elena", "Farid"]
PLACES = ["Paris", "Lagos", "Osaka", "Quito", "Oslo", "Perth"]
FILLER = ["great", "day", "with", "today", "so", "happy", "the", "we", "love", "new"]


def _post(rng: random.Random) -> tuple[list[str], list[str]]:
    person, place = rng.choice(PEOPLE), rng.choice(PLACES)
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 3))]
    tokens = [*words, person, "visits", place, "!"]
    labels = ["O"] * len(words) + ["B-PER", "O", "B-LOC", "O"]
    return tokens, labels


def write_tiny_dataset(root: Path, name: str = "tiny", sizes=(48, 12, 12), seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder = root / name
    folder.mkdir(parents=True)
    for split, n in zip(("train", "valid", "test"), sizes, strict=True):
        lines = []
        for i in range(n):
            tokens, labels = _post(rng)
            lines.append(f"IMGID:{split}{i}")
            lines.extend(f"{t}\t{lab}" for t, lab in zip(tokens, labels, strict=True))
            lines.append("")
        (folder / f"{split}.txt").write_text("\n".join(lines), encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """``tiny/{train,valid,test}.txt``: 48/12/12 posts "<filler> <PER> visits <LOC> !" (read-only)."""
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


def encoded(img, fmt: str, **params) -> bytes:
    """A Pillow image as the bytes of a file in ``fmt``."""
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims ``width`` x ``height``: a decompression bomb's shape."""
    from PIL import Image

    data = bytearray(encoded(Image.new("L", (1, 1)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # IHDR CRC over type + data
    return bytes(data)


def train_request(root: Path, encoder: Path, out: Path, **kw):
    """A TrainRequest for the tiny dataset: bert-crf (or ``model=``), 2 epochs (``train={...}`` overrides)."""
    from umt.pipeline.models.config import ModelConfig
    from umt.pipeline.train_config import TrainConfig
    from umt.stages.requests import TrainRequest

    settings = {"epochs": 2, "batch_size": 8, "lr": 2e-3, "warmup": 0.0, "seed": 3, **kw.pop("train", {})}
    return TrainRequest(
        dataset="tiny",
        model=kw.pop("model", "bert-crf"),
        data_root=root,
        model_cfg=ModelConfig(encoder=str(encoder), heads=4),
        train_cfg=TrainConfig(**settings),
        out=out,
        **kw,
    )


def write_grid_cache(path: Path, grids: dict, settings: dict | None = None, backbone: str = "resnet152") -> Path:
    """A feature cache of ``backbone`` holding ``grids`` (image id -> (blocks, C) array, or None for
    a missing image), written with the cache's own writer: what `umt extract-images` would leave,
    without running the backbone. ``settings`` replace manifest entries (e.g. the real weights
    identity and preprocessing)."""
    import numpy as np

    from umt.cache.format import CacheWriter, Status
    from umt.cache.manifest import dumps, ids_digest
    from umt.pipeline.vision.backbones import get_backbone

    chosen = get_backbone(backbone)
    shape = chosen.grid
    ids = list(grids)
    status = np.array([Status.OK if grids[i] is not None else Status.MISSING for i in ids], dtype=np.uint8)
    present = [np.asarray(g, dtype=np.float32).reshape(shape.stored) for g in grids.values() if g is not None]
    manifest = {
        "format_version": 1,
        "backbone": chosen.name,
        "layer": chosen.layer,
        **shape.to_manifest(),
        "weights": {"source": "random", "seed": 0},
        "preprocessing": {"resize": [224, 224], "interpolation": "bilinear"},
        "dtype": "float32",
        "plan": {"ids_sha256": ids_digest(ids), "total": len(ids), "chunk_size": len(ids)},
        **(settings or {}),
    }
    reasons = ["" if g is not None else "missing: not drawn" for g in grids.values()]
    with CacheWriter(path, path.with_name(path.name + ".tmp"), len(ids), "float32", shape) as writer:
        writer.append(ids, status, reasons, np.stack(present) if present else np.zeros((0, *shape.stored), np.float32))
        writer.finish(dumps(manifest))
    return path


#: The tiny posts of :func:`build_imaged_run` that have image files (the others have none).
IMAGED_IDS = ("train0", "train1", "train2", "train3", "train4", "train5", "test0", "test1", "test2")


def build_imaged_run(base: Path, root: Path, encoder: Path, model: str = "umt", epochs: int = 3) -> dict:
    """A multimodal model trained on the tiny dataset with a few real image files (``base/images``)
    whose grids the random ResNet-152 computed (the others absent): the settings a real extraction
    records, so that new images are featurised the same way. Returns the run, cache and images."""
    import numpy as np
    import torch
    from PIL import Image

    from umt.pipeline.data.layout import load_split
    from umt.pipeline.models.config import ModelConfig
    from umt.pipeline.train_config import TrainConfig
    from umt.pipeline.vision.backbones import get_backbone
    from umt.pipeline.vision.decode import decode
    from umt.stages import train
    from umt.stages.requests import TrainRequest

    images = base / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    resnet152 = get_backbone("resnet152")
    extractor = resnet152.build("random")
    grids = {p.image: None for split in ("train", "valid", "test") for p in load_split(root, "tiny", split)}
    for n, image_id in enumerate(IMAGED_IDS):
        pixels = rng.integers(0, 255, (40 + 4 * n, 56, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{image_id}.png")
        with torch.inference_mode():
            grid = extractor(torch.from_numpy(decode(images / f"{image_id}.png", resnet152.resize).pixels)[None])
        grids[image_id] = grid[0].reshape(49, 2048).numpy()
    settings = {
        "weights": resnet152.weights_identity("random"),
        "preprocessing": resnet152.preprocessing,
        "dtype": "float32",
    }
    cache = write_grid_cache(base / "tiny.h5", grids, settings)
    run = base / "run"
    train.run(
        TrainRequest(
            dataset="tiny",
            model=model,
            data_root=root,
            out=run,
            features=cache,
            model_cfg=ModelConfig(encoder=str(encoder), heads=4),
            train_cfg=TrainConfig(epochs=epochs, batch_size=8, lr=2e-3),
        )
    )
    return {"run": run, "cache": cache, "images": images, "base": base}


def place_in_hub_cache(folder: Path, cache: Path, repo: str, commit: str = "0" * 40) -> Path:
    """``folder`` as huggingface_hub stores a downloaded snapshot: blobs named by content, the
    snapshot's files links to them, refs/main naming the commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    (root / "blobs").mkdir(parents=True)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache
