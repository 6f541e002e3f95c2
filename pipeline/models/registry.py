"""The model zoo's registry: the keys are the names users type (``umt train --model NAME``).

A zoo entry is a builder (config, label vocabulary) -> model plus the switches its name fixes.
``build_model`` applies those switches onto the config before building, so the model's own
``config`` (what a run directory stores) always says what was built. This module stays light
(no torch import); the zoo, which imports torch and transformers, registers itself on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.models.config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

    from pipeline.labels import LabelVocab

Builder = Callable[[ModelConfig, "LabelVocab"], "nn.Module"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    multimodal: bool
    help: str
    builder: Builder
    fixes: dict[str, Any] = field(default_factory=dict)

    def configure(self, config: ModelConfig) -> ModelConfig:
        """The config with this entry's switches applied.

        A switch the user moved off its default to a value this entry contradicts is an error,
        not a silent override (``--model bert-crf --set crf=false`` asks for bert-softmax).
        """
        defaults = ModelConfig()
        for key, value in self.fixes.items():
            asked = getattr(config, key)
            if asked != value and asked != getattr(defaults, key):
                raise ConfigError(
                    f"model {self.name!r} fixes {key}={value}, but the config sets {key}={asked}; "
                    f"drop that setting or pick another model ({', '.join(model_names())})"
                )
        return replace(config, **self.fixes)


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str, *, multimodal: bool, help: str, fixes: dict[str, Any] | None = None
) -> Callable[[Builder], Builder]:
    """A decorator registering a builder under ``name``. One builder may serve several names
    that differ only in the switches they fix (``fixes``: config field -> value)."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        unknown = set(fixes or {}) - set(ModelConfig().to_dict())
        if unknown:
            raise ValueError(f"model {name!r} fixes unknown config keys {sorted(unknown)}")
        _REGISTRY[name] = ModelSpec(name, multimodal, help, builder, dict(fixes or {}))
        return builder

    return decorate


def _registry() -> dict[str, ModelSpec]:
    import pipeline.models.zoo  # noqa: F401  (registers the zoo's names on first use)

    return _REGISTRY


def model_names() -> list[str]:
    return list(_registry())


def model_spec(name: str) -> ModelSpec:
    if name not in _registry():
        raise ConfigError(f"unknown model {name!r}; registered models: {', '.join(model_names())}")
    return _REGISTRY[name]


def build_model(name: str, config: ModelConfig, vocab: LabelVocab) -> nn.Module:
    """A fresh model: ``forward(batch)`` -> loss, ``decode(batch)`` -> tag ids, ``multimodal``."""
    spec = model_spec(name)
    return spec.builder(spec.configure(config), vocab)
