"""The recipe registry: the keys are the names users type (``umt train --model NAME``).

A recipe is everything a model name stands for: its text side (how posts become encoder
inputs, and how that is saved in a run directory), its model builder (config, label vocabulary,
encoder) -> model, the config switches its name fixes, and its defaults: the settings its
literature trains it with (optimiser, learning rate, epochs, dropout, sizes), which apply
wherever the user gave no value (``Recipe.defaulted``) and stay overridable with ``--set``.
``build`` applies the fixed switches onto the config before building, so the model's own
``config`` (what a run directory stores) always says what was built. ``check`` names a light
function that checks a config's text inputs (an encoder folder, a vectors file) before torch
loads; ``paper`` is the row of the paper's Table 2 the recipe stands for.

Adding a model is its own module(s) plus one :func:`register` call in ``zoo``; the trainer,
the evaluator, the run directory and the CLI take it unchanged. This module only defines what a
recipe is and holds the registered ones; it imports no model: ``zoo`` registers every name,
and ``catalog`` (which imports the zoo) is where names are looked up, so no module imports its
own importer. It stays light (no torch import): a text side or check may be named as
``"module:attribute"``, imported only when used (:func:`resolve`), so that the CLI checks a
model name in milliseconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from umt.pipeline.errors import ConfigError, did_you_mean
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig

if TYPE_CHECKING:
    from torch import nn

    from umt.pipeline.labels import LabelVocab
    from umt.pipeline.modules.encoders import Encoder
    from umt.pipeline.text.base import TextSide

Builder = Callable[[ModelConfig, "LabelVocab", "Encoder"], "nn.Module"]
#: The named settings a model trains with (``umt train --recipe``): ``default``, umt's (each
#: recipe's ``defaults`` over the configs' own defaults, chosen on dev where they differ from
#: the paper: the recipe table in docs/training.md), or ``paper``, what the paper's section 3.1 states for
#: every system (``paper_settings``, with ``paper_datasets`` for a value that depends on the dataset).
SETTINGS = ("default", "paper")
Check = Callable[[ModelConfig], None]


def resolve(target: Any) -> Any:
    """``target``, or the object a ``"module:attribute"`` string names (imported now)."""
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    return target


@dataclass(frozen=True)
class Recipe:
    name: str
    multimodal: bool
    help: str
    text: type[TextSide] | str  # the class, or "module:Class" imported on first use
    builder: Builder
    fixes: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)  # ModelConfig and TrainConfig fields
    check: Check | str | None = None  # the function, or "module:function" imported on first use
    paper: str = ""
    paper_settings: dict[str, Any] = field(default_factory=dict)  # ModelConfig and TrainConfig fields
    paper_datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> settings

    def text_side(self) -> type[TextSide]:
        """The text side class (imported now if it was registered by name)."""
        return resolve(self.text)

    def check_inputs(self, config: ModelConfig) -> None:
        """The recipe's light check of ``config``'s text inputs (ConfigError naming what is wrong)."""
        if self.check is not None:
            resolve(self.check)(self.configure(config))

    def settings(self, which: str = "default", dataset: str = "") -> dict[str, Any]:
        """The settings ``which`` (:data:`SETTINGS`) names for this model on ``dataset``: the
        fields that differ from the configs' own defaults."""
        if which not in SETTINGS:
            hint = did_you_mean(which, SETTINGS)
            raise ConfigError(f"unknown recipe {which!r}{hint}; recipes: {', '.join(SETTINGS)}")
        if which == "default":
            return dict(self.defaults)
        if not self.paper_settings:
            raise ConfigError(f"model {self.name!r} has no paper settings; train it with --recipe default")
        return {**self.paper_settings, **self.paper_datasets.get(dataset, {})}

    def defaulted(
        self,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        explicit: frozenset[str],
        settings: str = "default",
        dataset: str = "",
    ) -> tuple[ModelConfig, TrainConfig]:
        """The configs with the ``settings`` of this recipe wherever the user set nothing (``explicit``)."""
        chosen = {k: v for k, v in self.settings(settings, dataset).items() if k not in explicit}
        model_keys = set(ModelConfig().to_dict())
        return (
            replace(model_cfg, **{k: v for k, v in chosen.items() if k in model_keys}),
            replace(train_cfg, **{k: v for k, v in chosen.items() if k not in model_keys}),
        )

    def configure(self, config: ModelConfig) -> ModelConfig:
        """The config with this recipe's switches applied.

        A switch the user moved off its default to a value this recipe contradicts is an error,
        not a silent override (``--model bert-crf --set crf=false`` asks for bert-softmax).
        """
        defaults = ModelConfig()
        for key, value in self.fixes.items():
            asked = getattr(config, key)
            if asked != value and asked != getattr(defaults, key):
                raise ConfigError(
                    f"model {self.name!r} fixes {key}={value}, but the config sets {key}={asked}; "
                    f"drop that setting or pick another model ({', '.join(RECIPES)})"
                )
        return replace(config, **self.fixes)

    def build(self, config: ModelConfig, vocab: LabelVocab, text: TextSide) -> nn.Module:
        """A fresh model for ``text`` (its encoder built by the text side)."""
        config = self.configure(config)
        return self.builder(config, vocab, text.build_encoder(config))


#: Every registered recipe by name, in registration order (look names up through ``catalog``,
#: which loads the zoo first).
RECIPES: dict[str, Recipe] = {}


def register(
    name: str,
    *,
    multimodal: bool,
    help: str,
    text: type[TextSide] | str,
    fixes: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    check: Check | str | None = None,
    paper: str = "",
    paper_settings: dict[str, Any] | None = None,
    paper_datasets: dict[str, dict[str, Any]] | None = None,
) -> Callable[[Builder], Builder]:
    """A decorator registering a builder under ``name`` with its text side. One builder may serve
    several names that differ only in the switches they fix (``fixes``: config field -> value)
    and the defaults they train with (``defaults``: ModelConfig or TrainConfig field -> value);
    ``paper_settings`` (and per dataset ``paper_datasets``) are what its paper states, the
    settings of ``--recipe paper``."""

    def decorate(builder: Builder) -> Builder:
        if name in RECIPES:
            raise ValueError(f"model {name!r} is registered twice")
        model_keys, train_keys = set(ModelConfig().to_dict()), set(TrainConfig().to_dict())
        setting_sets = [defaults or {}, paper_settings or {}, *(paper_datasets or {}).values()]
        unknown = (set(fixes or {}) - model_keys) | {k for d in setting_sets for k in d} - model_keys - train_keys
        if unknown:
            raise ValueError(f"model {name!r} fixes or sets unknown config keys {sorted(unknown)}")
        for values in setting_sets:  # the values must pass the configs' own checks
            ModelConfig(**{k: v for k, v in values.items() if k in model_keys})
            TrainConfig(**{k: v for k, v in values.items() if k in train_keys})
        RECIPES[name] = Recipe(
            name,
            multimodal,
            help,
            text,
            builder,
            dict(fixes or {}),
            dict(defaults or {}),
            check,
            paper,
            dict(paper_settings or {}),
            {k: dict(v) for k, v in (paper_datasets or {}).items()},
        )
        return builder

    return decorate
