"""The one type check of the flat configs (ModelConfig, TrainConfig): what ``--set`` and a run's
``config.json`` feed them must be a bool, int, float or str as declared (an int is taken as a float)."""

from __future__ import annotations

from dataclasses import fields

from umt.pipeline.errors import ConfigError

_TYPES = {"bool": bool, "int": int, "float": float, "str": str}


def check_field_types(config: object, label: str) -> None:
    """Check every field of the frozen dataclass ``config``; widen ints given for floats."""
    for f in fields(config):
        value = getattr(config, f.name)
        expected = _TYPES[f.type]
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(config, f.name, float(value))
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"{label}{f.name} must be a {f.type}, got {value!r}")
