"""The model zoo: :func:`get_recipe` for every name in :func:`model_names`, and :func:`register`."""

from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.registry import Recipe, get_recipe, model_names, register, registered

__all__ = ["ModelConfig", "Recipe", "get_recipe", "model_names", "register", "registered"]
