"""The model zoo: ``build_model(name, config, vocab)`` for every name in ``model_names()``."""

from pipeline.models.config import ModelConfig
from pipeline.models.registry import ModelSpec, build_model, model_names, model_spec, register

__all__ = ["ModelConfig", "ModelSpec", "build_model", "model_names", "model_spec", "register"]
