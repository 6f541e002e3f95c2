"""A finished run rebuilt as a model: :func:`load_run` and the :class:`TrainedRun` it returns.

``umt.load(path)`` is :func:`load_run`. It reads the run's files through
:class:`umt.pipeline.run_dir.RunDir` (the recipe name, the configs, the label vocabulary, the
text side and the best epoch's weights), checks that the weights fit the model those files
describe before anything is allocated, and rebuilds the model through the registry, with no
hub, no dataset and no code from the run. A :class:`TrainedRun` scores datasets
(:meth:`TrainedRun.predictor`), tags word lists (:meth:`TrainedRun.predict`) and tags new
posts with their images (:meth:`TrainedRun.tag`, through
:class:`umt.pipeline.inference.posts.PostTagger`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from umt.pipeline.data.batching import MnerDataset
from umt.pipeline.data.features import open_run_features
from umt.pipeline.data.types import Post
from umt.pipeline.data.visual_stats import StandardizedFeatures, VisualStats
from umt.pipeline.errors import ConfigError
from umt.pipeline.inference.predictor import Predictor
from umt.pipeline.labels import LabelVocab
from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.run_dir import RunConfig, RunDir
from umt.pipeline.runtime.devices import check_quantize, resolve_device
from umt.pipeline.runtime.precision import quantize_int8
from umt.pipeline.sharing.source import open_run
from umt.pipeline.text.base import TextSide

if TYPE_CHECKING:
    from umt.cache.reader import FeatureCache


@dataclass
class TrainedRun:
    """A finished run's model, ready to score or tag posts (``umt.load``)."""

    run: RunDir
    config: RunConfig
    model: torch.nn.Module
    vocab: LabelVocab
    text: TextSide
    multimodal: bool
    device: torch.device
    #: The run's visual standardisation statistics (None when it trained without).
    visual_stats: VisualStats | None = None
    #: ``none``, or ``int8`` for a dynamically quantized model (inference only).
    quantize: str = "none"
    _taggers: dict = field(default_factory=dict, repr=False)

    @property
    def ignores_images(self) -> bool:
        """A text-only recipe, or a run trained ``--no-images``: images given to it are not read."""
        return not self.multimodal or self.config.no_images

    def tag(
        self, texts: Sequence[str | Sequence[str]], images: Sequence[str | Path | None] | None = None, **options
    ) -> list[dict]:
        """Tag new posts: for each text (or list of tokens), its tokens, valid BIO2 tags and
        entities as Hugging Face's token-classification pipeline gives them (``entity_group``,
        ``word``, ``start``, ``end``, ``score``), with ``score`` the model's probability of the
        span. ``images``: a path (or an id with ``images_dir=``) per post, or None. ``options``
        are :class:`umt.pipeline.inference.posts.PostTagger`'s (style, images_dir, features,
        weights, image_cache, batch_size)."""
        from umt.pipeline.inference.posts import PostTagger

        key = tuple(sorted((k, str(v)) for k, v in options.items()))
        if key not in self._taggers:
            self._taggers[key] = PostTagger(self, **options)
        return self._taggers[key].tag(texts, images)

    def features(self, override: Path | None = None) -> FeatureCache | StandardizedFeatures | None:
        """The feature cache this run reads (its own, or ``override`` if it matches the run's
        settings), standardised as in training; None for text-only runs and ``--no-images`` runs."""
        if self.ignores_images:
            return None
        return open_run_features(self.config.cache, override, self.visual_stats)

    def dataset(self, posts: Sequence[Post], features=None, name: str = "data") -> MnerDataset:
        return MnerDataset(posts, self.text, self.vocab, features, name=name)

    def predict(self, posts: Sequence[Post | Sequence[str]], features=None) -> list[list[str]]:
        """BIO2 tags for each post (a :class:`Post` or a list of words); images from ``features``
        (default: none, every post image-less)."""
        posts = [p if isinstance(p, Post) else Post(list(p), None, None) for p in posts]
        return self.predictor().predict(self.dataset(posts, features))

    def predictor(self) -> Predictor:
        """A :class:`Predictor` for this run's model and settings."""
        return Predictor(self.model, self.text, self.vocab, self.config.train_cfg, self.device)


def load_run(path: Path | str | RunDir, device: str | torch.device = "auto", quantize: str = "none") -> TrainedRun:
    """Rebuild the trained model of a finished run (best dev checkpoint, eval mode) from its folder
    alone: a run directory, an exported folder or a hub id (:mod:`umt.pipeline.sharing.source`).
    ``quantize="int8"``: int8 dynamic quantization for CPU inference (:func:`quantize_int8`)."""
    check_quantize(quantize)
    run = path if isinstance(path, RunDir) else open_run(path)
    config = run.config()
    # How to compute is this machine's business, not the run's: no more loader workers than cores.
    runtime = {"num_workers": min(config.train_cfg.num_workers, os.cpu_count() or 1), "compile": False}
    config = replace(config, train_cfg=replace(config.train_cfg, **runtime))
    vocab = run.vocab()
    recipe = get_recipe(config.model)
    side = recipe.text_side()
    if config.text.get("kind") != side.kind:
        raise ConfigError(
            f"{run.path / run.CONFIG}: the run's text side is {config.text.get('kind')!r} but model "
            f"{config.model!r} now reads {side.kind!r}"
        )
    model_cfg = replace(config.model_cfg, pretrained_encoder=False)  # every weight is in the run's weights
    text = side.load(run.checked_text_dir(), model_cfg)
    weights = run.best_weights()
    _check_fit(run, lambda: recipe.build(model_cfg, vocab, text), weights)
    stats = read_visual_stats(run)
    model = recipe.build(model_cfg, vocab, text)
    model.load_state_dict(weights)
    resolved = resolve_device(device) if isinstance(device, str) else device
    model.to(resolved).eval()
    if quantize == "int8":
        model = quantize_int8(model, resolved)
    return TrainedRun(run, config, model, vocab, text, recipe.multimodal, resolved, stats, quantize)


def read_visual_stats(run: RunDir) -> VisualStats | None:
    """The run's visual standardisation statistics, checked (a damaged file is a ConfigError naming it)."""
    stored = run.visual_stats()
    if stored is None:
        return None
    state, origin = stored
    try:
        return VisualStats.from_state(state)
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{origin}: damaged visual statistics ({e})") from None


def _check_fit(run: RunDir, build: Callable[[], torch.nn.Module], weights: dict) -> None:
    """The model the run's files describe, built without memory (on the meta device), has
    exactly the weights' names and shapes: else a ConfigError, before a crafted config or
    label vocabulary can make the real build allocate whatever sizes it names."""
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in build().state_dict().items()}
    found = {name: tuple(t.shape) for name, t in weights.items()}
    if expected == found:
        return
    name = run.WEIGHTS if (run.path / run.WEIGHTS).exists() else run.LEGACY_WEIGHTS
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    shapes = [
        f"{k}: {found[k]} in the file, {expected[k]} in the model"
        for k in sorted(set(expected) & set(found))
        if found[k] != expected[k]
    ]
    problems = (
        ([f"missing {', '.join(missing[:3])}"] if missing else [])
        + ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
        + shapes[:3]
    )
    raise ConfigError(
        f"{run.path / name} does not fit the model its config and labels describe: {'; '.join(problems)[:400]}"
    )
