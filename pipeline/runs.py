"""Starting a training run and reopening a finished one from its directory alone.

``umt train``, ``umt eval``, ``umt predict`` and ``umt demo`` all go through here, so a run
directory is read and written in exactly one way.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig

from pipeline import rundir
from pipeline.data.align import Aligner
from pipeline.data.dataset import Collator, MnerDataset
from pipeline.data.tokenizer import load_tokenizer
from pipeline.data.types import Post
from pipeline.errors import ConfigError
from pipeline.labels import LabelVocab
from pipeline.models.config import ModelConfig
from pipeline.models.registry import build_model, model_spec
from pipeline.train_config import TrainConfig

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_value(kind, raw: str, key: str):
    kind = (
        kind
        if isinstance(kind, type)
        else {"bool": bool, "int": int, "float": float, "str": str}.get(kind, str)
    )
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"--set {key}={raw}: expected true or false")
    try:
        return kind(raw)
    except ValueError as e:
        raise ConfigError(f"--set {key}={raw}: expected a {kind.__name__}") from e


def apply_overrides(model_cfg: ModelConfig, train_cfg: TrainConfig, pairs: list[str]):
    """Apply ``key=value`` strings to whichever config has the field; unknown keys are errors."""
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        for which, cfg in enumerate((model_cfg, train_cfg)):
            found = {f.name: f for f in dataclasses.fields(cfg)}
            if key in found:
                changed = dataclasses.replace(cfg, **{key: _parse_value(found[key].type, raw.strip(), key)})
                model_cfg, train_cfg = (changed, train_cfg) if which == 0 else (model_cfg, changed)
                break
        else:
            names = sorted(f.name for c in (model_cfg, train_cfg) for f in dataclasses.fields(c))
            raise ConfigError(f"--set {key}: unknown setting; known: {', '.join(names)}")
    return model_cfg, train_cfg


@dataclass
class TextSide:
    """What turns posts into batches for one encoder: tokenizer, aligner and collator."""

    tokenizer: object
    aligner: Aligner
    collate: Collator

    @classmethod
    def build(cls, encoder: str, train_cfg: TrainConfig, with_images: bool) -> TextSide:
        tokenizer = load_tokenizer(encoder)
        aligner = Aligner(tokenizer, max_length=train_cfg.max_length, stride=train_cfg.stride)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return cls(tokenizer, aligner, Collator(pad, with_images))

    def dataset(self, posts: list[Post], vocab: LabelVocab, features, name: str) -> MnerDataset:
        return MnerDataset(posts, self.aligner, vocab, features, name=name)


def save_encoder_files(encoder: str, tokenizer, run: Path) -> None:
    """Copy the encoder's config and tokenizer into ``run/encoder`` (weights go in the checkpoint)."""
    target = run / rundir.ENCODER
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    AutoConfig.from_pretrained(encoder).save_pretrained(target)
    tokenizer.save_pretrained(target)


@dataclass
class OpenRun:
    """A run directory reopened: its model (best checkpoint), labels, text side and config."""

    path: Path
    config: dict
    model: torch.nn.Module
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    vocab: LabelVocab
    text: TextSide
    multimodal: bool


def open_run(path: Path, device: torch.device) -> OpenRun:
    path = Path(path)
    for name in (rundir.CONFIG, rundir.LABELS, rundir.BEST):
        if not (path / name).exists():
            raise ConfigError(f"{path}: not a finished umt run directory (no {name})")
    config = rundir.read_json(path / rundir.CONFIG)
    vocab = LabelVocab.from_json(rundir.read_json(path / rundir.LABELS))
    # every weight comes from the checkpoint; the encoder folder holds its config and tokenizer
    model_cfg = dataclasses.replace(
        ModelConfig.from_dict(config["model_config"]), encoder=str(path / rundir.ENCODER), pretrained_encoder=False
    )
    train_cfg = TrainConfig(**config["train"])
    multimodal = model_spec(config["model"]).multimodal
    model = build_model(config["model"], model_cfg, vocab)
    model.load_state_dict(rundir.load_torch(path / rundir.BEST)["model"])
    model.to(device).eval()
    text = TextSide.build(model_cfg.encoder, train_cfg, with_images=multimodal)
    return OpenRun(path, config, model, model_cfg, train_cfg, vocab, text, multimodal)
