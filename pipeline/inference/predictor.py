"""A model tagging whole datasets: the one path from windows to word tags that training's dev
evaluation, ``umt eval``, ``umt predict`` and ``umt.load(run).predict`` all take.

The model is read through its contract only (``model.decode(batch)``, ``model.emissions``);
windows are merged back into posts by :mod:`umt.pipeline.inference.windows`, and new posts get
entity dicts and span probabilities from :mod:`umt.pipeline.inference.entities`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from umt.pipeline.data.batching import Collator, MnerDataset, cut_by_length, make_loader
from umt.pipeline.inference.entities import Tagged, tag_batches
from umt.pipeline.inference.windows import decode_windows, merge_windows
from umt.pipeline.labels import LabelVocab
from umt.pipeline.metrics import score
from umt.pipeline.runtime.distributed import World
from umt.pipeline.runtime.precision import Precision, resolve_precision
from umt.pipeline.text.base import TextSide
from umt.pipeline.train_config import TrainConfig


@dataclass
class Predictor:
    """A model with what it takes to tag whole datasets: its text side, label vocabulary and settings.
    Under torchrun every process tags its share of the windows and all get every post's tags."""

    model: torch.nn.Module
    text: TextSide
    vocab: LabelVocab
    cfg: TrainConfig
    device: torch.device
    world: World = field(default_factory=World)
    precision: Precision = field(init=False)

    def __post_init__(self) -> None:
        self.precision = resolve_precision(self.cfg.precision, self.device)

    def batches(self, dataset: MnerDataset, order=None) -> DataLoader:
        """``dataset``'s windows (those of ``order``, or all) in evaluation batches, longest
        first: windows of similar length share a batch, so little of it is padding (on the
        Twitter-2017 test posts, a third fewer encoder positions than in the dataset's order).
        On a CPU, where the text side prices a call (``TextSide.call_cost``), the batches are
        cut where the positions saved outweigh one more call (:func:`cut_by_length`, pricing
        packed rows for a model that packs them); otherwise they hold ``eval_batch_size``
        windows each. Every window's result is its own whatever its batch, and they are put
        back by post."""
        collate = Collator(self.text, dataset.features.shape if dataset.features is not None else None)
        chosen = range(len(dataset)) if order is None else order
        positions = [item.window.positions for item in dataset.items]
        by_length = sorted(chosen, key=lambda i: -positions[i])
        size, workers = self.cfg.eval_batch_size, self.cfg.num_workers
        if self.text.call_cost is None or self.device.type != "cpu":
            return make_loader(dataset, collate, size, workers, by_length)
        cuts = cut_by_length([positions[i] for i in by_length], size, self.text.call_cost, packed=self.model.packs)
        return make_loader(dataset, collate, size, workers, batches=[[by_length[k] for k in cut] for cut in cuts])

    def predict(self, dataset: MnerDataset) -> list[list[str]]:
        """The predicted tags of every post of ``dataset`` (one per word)."""
        order = range(self.world.rank, len(dataset), self.world.size) if self.world.distributed else None
        with self.precision.autocast():
            windows = decode_windows(self.model, self.batches(dataset, order), self.vocab, self.device)
        gathered = [window for share in self.world.gather(windows) for window in share]
        return merge_windows([len(p) for p in dataset.posts], gathered)

    def tag(self, dataset: MnerDataset, texts, offsets, explain: bool = False) -> list[Tagged]:
        """Valid tags and entity dicts (:mod:`umt.pipeline.inference.entities`) of every post of ``dataset``, whose
        texts and token offsets are ``texts`` and ``offsets``."""
        posts = dataset.posts
        with self.precision.autocast():
            return tag_batches(
                self.model,
                self.batches(dataset),
                [len(p) for p in posts],
                texts,
                offsets,
                [p.tokens for p in posts],
                self.vocab,
                self.device,
                explain=explain,
            )

    def evaluate(self, dataset: MnerDataset) -> tuple[dict, list[list[str]]]:
        """Scores (both schemes) and the predicted tags of every post of ``dataset``."""
        preds = self.predict(dataset)
        return score([p.labels for p in dataset.posts], preds), preds
