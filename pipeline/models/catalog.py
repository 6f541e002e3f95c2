"""Looking up registered models: every name the zoo registers, by the name users type.

The registry (``registry``) holds recipes and the zoo (``zoo``) registers them; this module
imports the zoo, so whoever asks for a name finds them all, and neither of those two imports
the other's importer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import umt.pipeline.models.zoo  # noqa: F401  (registers the zoo's names)
from umt.pipeline.errors import ConfigError, did_you_mean
from umt.pipeline.models.registry import RECIPES, Builder, Recipe, register


def model_names() -> list[str]:
    return list(RECIPES)


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(
            f"unknown model {name!r}{did_you_mean(name, model_names())}; registered models: {', '.join(model_names())}"
        )
    return RECIPES[name]


@contextmanager
def registered(name: str, builder: Builder, **kwargs: Any) -> Iterator[Recipe]:
    """``register(name, **kwargs)(builder)`` for the length of a ``with`` block (tests, experiments)."""
    register(name, **kwargs)(builder)
    try:
        yield RECIPES[name]
    finally:
        RECIPES.pop(name, None)
