"""The settings a user may name: every field of :class:`ModelConfig` and :class:`TrainConfig`.

``umt train --set key=value``, an experiment file's ``set:`` and ``umt sweep``'s search space
all name settings this way; this module says which config holds a name, what type its value
has, and turns the text of a value into that type. No torch is imported.
"""

from __future__ import annotations

import dataclasses

from umt.pipeline.errors import ConfigError, did_you_mean
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Which config holds each setting, by the name of its group ("model" or "train").
CONFIGS = {"model": ModelConfig, "train": TrainConfig}
#: Each setting's value type as its annotation spells it ("int", "float", "str", "bool").
KINDS: dict[str, str] = {f.name: str(f.type) for config in CONFIGS.values() for f in dataclasses.fields(config)}
GROUPS: dict[str, str] = {f.name: group for group, config in CONFIGS.items() for f in dataclasses.fields(config)}


def setting_name(raw: str, what: str) -> str:
    """``raw`` as a setting name (``head-lr`` is ``head_lr``); ``what`` names it in the error."""
    key = raw.strip().replace("-", "_")
    if key not in KINDS:
        raise ConfigError(f"{what}: unknown setting {raw.strip()!r}{did_you_mean(key, KINDS)}")
    return key


def parse_value(key: str, raw: str, what: str) -> object:
    """The text ``raw`` as a value of setting ``key``; ``what`` names it in the error."""
    kind, raw = KINDS[key], raw.strip()
    if kind == "bool":
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigError(f"{what}: expected true or false, got {raw!r}")
    try:
        return {"int": int, "float": float, "str": str}[kind](raw)
    except (KeyError, ValueError):
        raise ConfigError(f"{what}: expected {'an' if kind == 'int' else 'a'} {kind}, got {raw!r}") from None
