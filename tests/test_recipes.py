"""A registry entry is a whole recipe: a word-level text side and encoder, written here in the test,
train, evaluate, reload and predict through the same trainer, run directory and ``umt.load`` as
the Hugging Face models, with the span-detection branch working on words as it does on pieces.
Nothing outside this file knows about them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import umt
from umt.pipeline.batch import TextInputs
from umt.pipeline.models.catalog import get_recipe, registered
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.zoo import multimodal_tagger, text_tagger
from umt.pipeline.modules.encoders import Encoder, TextStates
from umt.pipeline.run_dir import RunDir
from umt.pipeline.text.base import TextSide, Window
from umt.pipeline.train_config import TrainConfig
from umt.stages import evaluate, train
from umt.stages.requests import EvalRequest, TrainRequest

WIDTH = 16
ESD = {"esd": True}
PAD, UNKNOWN = "<pad>", "<unk>"


@dataclass
class WordIds(TextInputs):
    ids: torch.Tensor  # (B, W) word ids
    mask: torch.Tensor  # (B, W) bool


@dataclass(frozen=True)
class WordWindow(Window):
    ids: list[int]

    def __len__(self) -> int:
        return len(self.ids)


class ToyWordEncoder(Encoder):
    """Word embeddings and one linear map: states over words, so word_index = 0..W-1."""

    def __init__(self, words: int):
        super().__init__()
        self.hidden_size = WIDTH
        self.embed = nn.Embedding(words, WIDTH, padding_idx=0)
        self.mix = nn.Linear(WIDTH, WIDTH)

    def forward(self, inputs: WordIds) -> TextStates:
        states = torch.tanh(self.mix(self.embed(inputs.ids)))  # (B, W, d)
        index = torch.arange(inputs.ids.shape[1]).expand_as(inputs.ids)  # (B, W)
        return TextStates(states, inputs.mask, index)


class ToyWordSide(TextSide):
    kind = "toy-words"
    FILE = "words.json"

    def __init__(self, words: list[str]):
        self.words = words
        self.index = {w: i for i, w in enumerate(words)}

    @classmethod
    def create(cls, model_cfg, train_posts) -> ToyWordSide:
        return cls([PAD, UNKNOWN, *sorted({w for p in train_posts for w in p.tokens})])

    @classmethod
    def load(cls, folder: Path, model_cfg) -> ToyWordSide:
        return cls(json.loads((folder / cls.FILE).read_text()))

    def save(self, folder: Path) -> None:
        (folder / self.FILE).write_text(json.dumps(self.words))

    def windows(self, tokens: Sequence[str]) -> list[WordWindow]:
        ids = [self.index.get(w, self.index[UNKNOWN]) for w in tokens]
        return [WordWindow(offset=0, keep_from=0, keep_to=len(ids), ids=ids)] if ids else []

    def collate(self, windows: Sequence[WordWindow]) -> WordIds:
        width = max(len(w) for w in windows)
        ids = torch.zeros(len(windows), width, dtype=torch.long)
        for b, window in enumerate(windows):
            ids[b, : len(window)] = torch.tensor(window.ids)
        return WordIds(ids, ids != 0)

    def build_encoder(self, model_cfg: ModelConfig) -> ToyWordEncoder:
        return ToyWordEncoder(len(self.words))


@pytest.fixture(scope="module")
def toy_models():
    with (
        registered("toy-word-crf", text_tagger, multimodal=False, help="toy", text=ToyWordSide, fixes={"esd": False}),
        registered("toy-word-umt", multimodal_tagger, multimodal=True, help="toy", text=ToyWordSide, fixes=ESD),
    ):
        yield


def _request(root: Path, model: str, out: Path, features: Path | None = None) -> TrainRequest:
    return TrainRequest(
        dataset="tiny",
        model=model,
        data_root=root,
        out=out,
        no_images=features is None,
        features=features,
        model_cfg=ModelConfig(encoder="unused", pretrained_encoder=False, heads=4),
        train_cfg=TrainConfig(epochs=12, batch_size=8, lr=2e-2, warmup=0.0),
    )


def _conll_predictions(run: Path) -> list[list[str]]:
    blocks = (run / RunDir.PREDICTIONS).read_text().strip().split("\n\n")
    return [[line.split("\t")[2] for line in block.splitlines()[1:]] for block in blocks]


@pytest.mark.parametrize("model", ["toy-word-crf", "toy-word-umt"])
def test_a_word_level_recipe_trains_reloads_and_predicts_the_same(toy_models, tiny_root, tmp_path, model):
    run = tmp_path / model
    (metrics,) = train.run(_request(tiny_root, model, run))
    assert metrics["test"]["default"]["f1"] > 0.5  # it learned the tiny task: words decide the types
    assert json.loads((run / "text" / "words.json").read_text())[:2] == [PAD, UNKNOWN]
    assert RunDir(run).config().text == {"kind": "toy-words"}

    trained = umt.load(run, device="cpu")  # the public API: rebuilt from the folder alone
    assert trained.model.span_detector is not None if model == "toy-word-umt" else trained.model.span_detector is None
    from umt.pipeline.data.layout import load_split

    test_posts = load_split(tiny_root, "tiny", "test")
    assert trained.predict(test_posts) == _conll_predictions(run)
    assert trained.predict([["Anna", "visits", "Zurich", "!"]])[0][0] == "B-PER"  # unknown words still tagged
    again = evaluate.run(EvalRequest(run))
    assert again["default"] == metrics["test"]["default"]


def test_a_word_level_recipe_reads_images_through_the_cache(toy_models, tiny_root, tmp_path, capsys):
    """The same word-level side under MMI with real cache reads (a few images present, most missing)."""
    from PIL import Image

    from umt.pipeline.data.layout import load_dataset
    from umt.stages import extract_images
    from umt.stages.requests import ExtractRequest

    splits = load_dataset(tiny_root, "tiny")
    ids = sorted(p.image for posts in splits.values() for p in posts)
    images = tmp_path / "images"
    images.mkdir()
    drawn = [p.image for p in splits["train"][:6]] + [p.image for p in splits["test"][:4]]
    for i, image_id in enumerate(drawn):
        Image.new("RGB", (32, 32), (30 * i, 100, 0)).save(images / f"{image_id}.jpg")
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    cache = tmp_path / "feats.h5"
    extract_images.run(
        ExtractRequest(
            images=images, ids_from=tmp_path / "ids.txt", out=cache, weights="random", dtype="float32", num_workers=0
        )
    )
    run = tmp_path / "run"
    train.run(_request(tiny_root, "toy-word-umt", run, features=cache))
    assert "only 6 of 48 training posts (12.5%) have image features" in capsys.readouterr().out
    trained = umt.load(run, device="cpu")
    posts = splits["test"]
    assert trained.predict(posts, features=trained.features()) == _conll_predictions(run)


def test_registered_names_vanish_when_the_block_ends(tiny_root):
    from umt.pipeline.errors import ConfigError

    with registered("toy-word-tmp", text_tagger, multimodal=False, help="toy", text=ToyWordSide) as recipe:
        assert get_recipe("toy-word-tmp") is recipe and recipe.text_side() is ToyWordSide
    with pytest.raises(ConfigError, match="unknown model 'toy-word-tmp'"):
        get_recipe("toy-word-tmp")
