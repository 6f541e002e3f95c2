"""The run directory: one type that creates a run, checkpoints it, records it, and rebuilds its model.

Layout (JSON is UTF-8; scores in every file are fractions in [0, 1])::

    config.json              format version, model (recipe) name, ModelConfig, TrainConfig, the text
                             side's description, dataset, data root, feature cache path + pinned manifest,
                             the training data's tweet-tokenisation style (for ``umt predict``)
    labels.json              the BIO2 label vocabulary (order = model output ids)
    text/                    the text side's files (for Hugging Face encoders: config + tokenizer;
                             the weights live in the checkpoint)
    best.pt                  model state_dict of the epoch with the best dev F1 (+ epoch, dev F1)
    last.pt                  full training state after the last completed epoch (removed when the run ends)
    metrics.json             dev and test scores of best.pt: P/R/F1 overall and per type, both schemes
    predictions_test.conll   word<TAB>gold<TAB>predicted, blank line between posts, "# image: <id>" headers
    log.jsonl                one JSON object per event (start, epoch, resume, interrupted, end)
    env.json                 package versions, device, command line
    visual_stats.pt          channel mean/std of the training grids (only with standardize_visual)

A run carries everything its model needs to rebuild itself, the way flair's checkpoints carry
their constructor arguments: :meth:`RunDir.load` reads the recipe name, the configs, the label
vocabulary and the text side from these files and the weights from ``best.pt``, with no hub, no
dataset and no code outside the registry. ``umt.load(path)`` is this, for users.

Every file is written atomically (``umt.cache.durable``), with the umask's permissions, so a
crash never leaves a torn file. Problems a user can meet (a damaged or truncated file, a folder
that cannot be written) are :class:`ConfigError` s naming the file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umt.cache.durable import atomic_write, atomic_write_bytes
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.labels import LabelVocab
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.text.tweets import DEFAULT_STYLE
from umt.pipeline.train_config import TrainConfig

if TYPE_CHECKING:
    import torch

    from umt.pipeline.data.batching import MnerDataset
    from umt.pipeline.text.base import TextSide

FORMAT_VERSION = 2


def write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented UTF-8 JSON, written atomically; an unwritable place is a ConfigError."""
    try:
        atomic_write_bytes(path, json.dumps(obj, indent=2, ensure_ascii=False).encode("utf-8") + b"\n")
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from None


@dataclass(frozen=True)
class RunConfig:
    """What ``config.json`` holds: enough to rebuild the model and to find its data."""

    model: str
    dataset: str
    data_root: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    text: dict[str, Any]  # the text side's describe(): at least its kind
    features: dict[str, Any] | None  # {"path", "manifest"} of the cache read, None when text-only
    no_images: bool = False
    #: How the training data split tweets (``pipeline.text.tweets``): what ``umt predict`` uses on raw text.
    token_style: str = DEFAULT_STYLE

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "data_root": self.data_root,
            "model_config": self.model_cfg.to_dict(),
            "train": self.train_cfg.to_dict(),
            "text": self.text,
            "features": self.features,
            "no_images": self.no_images,
            "token_style": self.token_style,
        }

    @classmethod
    def from_json(cls, data: Any, origin: Path) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a JSON object, found {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ConfigError(
                f"{origin}: run format version {version!r}, this umt reads version {FORMAT_VERSION}; "
                "retrain the run with this version"
            )
        try:
            return cls(
                model=data["model"],
                dataset=data["dataset"],
                data_root=data["data_root"],
                model_cfg=ModelConfig.from_dict(data["model_config"]),
                train_cfg=TrainConfig.from_dict(data["train"]),
                text=dict(data["text"]),
                features=data.get("features"),
                no_images=bool(data.get("no_images", False)),
                token_style=str(data.get("token_style", DEFAULT_STYLE)),
            )
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{origin}: damaged run config ({type(e).__name__}: {e})") from None


class RunDir:
    """One run's folder. ``RunDir(path)`` names it; :meth:`claim` prepares it for training and
    :meth:`open` checks that it holds a finished run."""

    CONFIG = "config.json"
    LABELS = "labels.json"
    TEXT = "text"
    BEST = "best.pt"
    LAST = "last.pt"
    METRICS = "metrics.json"
    PREDICTIONS = "predictions_test.conll"
    LOG = "log.jsonl"
    ENV = "env.json"
    VISUAL_STATS = "visual_stats.pt"

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- state -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return (self.path / self.METRICS).is_file()

    @property
    def resumable(self) -> bool:
        """An interrupted run: at least one epoch completed, not finished."""
        return (self.path / self.LAST).is_file() and not self.finished

    def claim(self, *, resume: bool, overwrite: bool) -> str:
        """Prepare the folder for training: ``"new"``, ``"resume"`` or ``"finished"`` (skip it).

        A finished or resumable run is replaced only with ``overwrite``. A folder left by a run
        that failed before completing an epoch holds nothing to keep and is replaced. A folder
        that cannot be created or written is a ConfigError, before any model loads.
        """
        if resume and self.finished:
            return "finished"
        if resume and self.resumable:
            return "resume"
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} exists and is not a folder; choose another --out")
        if self.path.exists() and any(self.path.iterdir()):
            if (self.finished or self.resumable) and not overwrite:
                hint = "--resume to continue it" if self.resumable else "--overwrite to replace it"
                raise ConfigError(f"{self.path} already holds a run; use {hint}, or choose another --out")
            self._clear()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run directory {self.path}: {e.strerror}") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"cannot write into the run directory {self.path}: permission denied")
        return "new"

    def _clear(self) -> None:
        try:
            shutil.rmtree(self.path)
        except OSError as e:
            raise ConfigError(f"cannot replace {self.path}: {e.strerror}") from None

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        """A finished run (its config, labels and best checkpoint present), else a ConfigError."""
        run = cls(path)
        if not run.path.is_dir():
            raise ConfigError(f"{run.path} is not a run directory (no such folder)")
        for name in (cls.CONFIG, cls.LABELS, cls.BEST):
            if not (run.path / name).exists():
                state = "an unfinished run (continue it with umt train --resume)" if run.resumable else "not a run"
                raise ConfigError(f"{run.path}: {state}: it has no {name}")
        return run

    # ---- files -------------------------------------------------------------------------------

    def _write(self, name: str, data: bytes) -> None:
        try:
            atomic_write_bytes(self.path / name, data)
        except OSError as e:
            raise ConfigError(f"cannot write {self.path / name}: {e.strerror}") from None

    def write_json(self, name: str, obj: Any) -> None:
        write_json(self.path / name, obj)

    def read_json(self, name: str) -> Any:
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} is missing") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); the file is damaged") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None

    def save_torch(self, name: str, obj: Any) -> None:
        import torch

        try:
            atomic_write(self.path / name, lambda handle: torch.save(obj, handle))
        except OSError as e:
            raise ConfigError(f"cannot write {self.path / name}: {e.strerror}") from None

    def load_torch(self, name: str) -> Any:
        import torch

        path = self.path / name
        try:
            size = path.stat().st_size
        except OSError:
            raise ConfigError(f"{path} is missing") from None
        if size == 0:
            raise ConfigError(f"{path} is empty (0 bytes): the file is damaged; train the run again")
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # any parse failure of a user's file: truncated, corrupt, not torch
            reason = " ".join(str(e).split()).split(". ")[0][:160]  # torch's first sentence says what failed
            raise ConfigError(
                f"{path} cannot be read ({type(e).__name__}: {reason}): the file is damaged or truncated; "
                "train the run again"
            ) from None

    def write_config(self, config: RunConfig) -> None:
        self.write_json(self.CONFIG, config.to_json())

    def config(self) -> RunConfig:
        return RunConfig.from_json(self.read_json(self.CONFIG), self.path / self.CONFIG)

    def save_labels(self, vocab: LabelVocab) -> None:
        self.write_json(self.LABELS, vocab.to_json())

    def labels(self) -> LabelVocab:
        data = self.read_json(self.LABELS)
        try:
            return LabelVocab.from_json(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{self.path / self.LABELS}: damaged label vocabulary ({e})") from None

    @property
    def text_dir(self) -> Path:
        return self.path / self.TEXT

    def save_text(self, text: TextSide) -> None:
        if self.text_dir.exists():
            shutil.rmtree(self.text_dir)
        try:
            self.text_dir.mkdir(parents=True)
            text.save(self.text_dir)
        except OSError as e:
            raise ConfigError(f"cannot write {self.text_dir}: {e.strerror}") from None

    def save_visual_stats(self, stats) -> None:
        self.save_torch(self.VISUAL_STATS, stats.state())

    def visual_stats(self):
        """The run's visual standardisation statistics, or None when it trained without."""
        from umt.pipeline.data.visual_stats import VisualStats

        if not (self.path / self.VISUAL_STATS).is_file():
            return None
        return VisualStats.from_state(self.load_torch(self.VISUAL_STATS))

    def save_best(self, state_dict: dict, epoch: int, dev_f1: float) -> None:
        self.save_torch(self.BEST, {"model": state_dict, "epoch": epoch, "dev_f1": dev_f1})

    def best_weights(self) -> dict:
        state = self.load_torch(self.BEST)
        if not isinstance(state, dict) or "model" not in state:
            raise ConfigError(f"{self.path / self.BEST} is not a umt checkpoint (no model weights)")
        return state["model"]

    def save_state(self, state: dict) -> None:
        self.save_torch(self.LAST, state)

    def state(self) -> dict:
        return self.load_torch(self.LAST)

    def finish(self, metrics: dict, posts: Sequence[Post], predictions: Sequence[Sequence[str]]) -> None:
        """Write metrics and test predictions, drop the resumable state: the run is finished."""
        self.write_predictions(self.PREDICTIONS, posts, predictions)
        self.write_json(self.METRICS, metrics)
        (self.path / self.LAST).unlink(missing_ok=True)

    def metrics(self) -> dict:
        return self.read_json(self.METRICS)

    def write_predictions(self, name: str, posts: Sequence[Post], predictions: Sequence[Sequence[str]]) -> None:
        lines: list[str] = []
        for post, pred in zip(posts, predictions, strict=True):
            lines.append(f"# image: {post.image if post.image is not None else '-'}")
            gold = post.labels if post.labels is not None else ["-"] * len(post.tokens)
            lines.extend(f"{w}\t{g}\t{p}" for w, g, p in zip(post.tokens, gold, pred, strict=True))
            lines.append("")
        self._write(name, ("\n".join(lines) + "\n").encode("utf-8"))

    def log(self, record: dict) -> None:
        """Append one event to ``log.jsonl`` (one write call per line, flushed)."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
        try:
            with open(self.path / self.LOG, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
        except OSError as e:
            raise ConfigError(f"cannot write {self.path / self.LOG}: {e.strerror}") from None

    def events(self) -> list[dict]:
        path = self.path / self.LOG
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def write_env(self, device: Any) -> None:
        from umt.pipeline.environment import environment

        self.write_json(self.ENV, environment(device))

    # ---- the model ---------------------------------------------------------------------------

    def load(self, device: str | torch.device = "auto") -> TrainedRun:
        """Rebuild the trained model (best dev checkpoint, eval mode) from this folder alone."""
        from umt.pipeline.devices import resolve_device
        from umt.pipeline.models.registry import get_recipe

        config = self.config()
        vocab = self.labels()
        recipe = get_recipe(config.model)
        side = recipe.text_side()
        if config.text.get("kind") != side.kind:
            raise ConfigError(
                f"{self.path / self.CONFIG}: the run's text side is {config.text.get('kind')!r} but model "
                f"{config.model!r} now reads {side.kind!r}"
            )
        model_cfg = replace(config.model_cfg, pretrained_encoder=False)  # every weight is in best.pt
        text = side.load(self.text_dir, model_cfg, config.train_cfg)
        model = recipe.build(model_cfg, vocab, text)
        try:
            model.load_state_dict(self.best_weights())
        except RuntimeError as e:
            reason = " ".join(str(e).split())[:300]
            raise ConfigError(
                f"{self.path / self.BEST} does not fit the model its config describes: {reason}"
            ) from None
        resolved = resolve_device(device) if isinstance(device, str) else device
        model.to(resolved).eval()
        return TrainedRun(self, config, model, vocab, text, recipe.multimodal, resolved)


@dataclass
class TrainedRun:
    """A finished run's model, ready to score or tag posts (``umt.load``)."""

    run: RunDir
    config: RunConfig
    model: torch.nn.Module
    labels: LabelVocab
    text: TextSide
    multimodal: bool
    device: torch.device
    _taggers: dict = field(default_factory=dict, repr=False)

    def tag(
        self, texts: Sequence[str | Sequence[str]], images: Sequence[str | Path | None] | None = None, **options
    ) -> list[dict]:
        """Tag new posts: for each text (or list of tokens), its tokens, valid BIO2 tags and
        entities as Hugging Face's token-classification pipeline gives them (``entity_group``,
        ``word``, ``start``, ``end``, ``score``), with ``score`` the model's probability of the
        span. ``images``: a path (or an id with ``images_dir=``) per post, or None. ``options``
        are :class:`umt.pipeline.post_tagger.PostTagger`'s (style, images_dir, features, weights,
        image_cache, batch_size)."""
        from umt.pipeline.post_tagger import PostTagger

        key = tuple(sorted((k, str(v)) for k, v in options.items()))
        if key not in self._taggers:
            self._taggers[key] = PostTagger(self, **options)
        return self._taggers[key].tag(texts, images)

    def features(self, override: Path | None = None):
        """The feature cache this run reads (its own, or ``override`` if it matches the run's
        settings), standardised as in training; None for text-only runs and ``--no-images`` runs."""
        from umt.pipeline.features import open_run_features

        if not self.multimodal or self.config.no_images:
            return None
        return open_run_features(self.config.features, override, self.run.visual_stats())

    def dataset(self, posts: Sequence[Post], features=None, name: str = "data") -> MnerDataset:
        from umt.pipeline.data.batching import MnerDataset

        return MnerDataset(posts, self.text, self.labels, features, name=name)

    def predict(self, posts: Sequence[Post | Sequence[str]], features=None) -> list[list[str]]:
        """BIO2 tags for each post (a :class:`Post` or a list of words); images from ``features``
        (default: none, every post image-less)."""
        posts = [p if isinstance(p, Post) else Post(list(p), None, None) for p in posts]
        return self.predictor().predict(self.dataset(posts, features))

    def predictor(self):
        """A :class:`umt.pipeline.trainer.Predictor` for this run's model and settings."""
        from umt.pipeline.trainer import Predictor

        return Predictor(self.model, self.text, self.labels, self.config.train_cfg, self.device)
