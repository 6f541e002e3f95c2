"""What every tracker records, named once, so TensorBoard, MLflow and wandb show the same names.

- ``train/loss`` and ``lr/<group>`` (``encoder``, ``head``, or ``model``) at every optimiser step;
- ``dev/<type>/<score>`` after every epoch, at the epoch's number: precision, recall and f1 for
  ``micro`` and each entity type (the scheme runs are selected on, seqeval's default);
- ``final/dev/<type>/<score>`` and ``final/test/<type>/<score>`` once the run is finished (the
  selected epoch's scores, as ``metrics.json`` holds them);
- the run's ``config.json`` flattened to ``section.field`` keys (``train.lr``, ``model_config.encoder``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from umt.pipeline.metrics import PRIMARY

#: The scores recorded for every entity type.
SCORES = ("precision", "recall", "f1")
#: The figure a tracker that ranks runs (TensorBoard's hparams, MLflow's table) compares them by.
HEADLINE = "final/test/micro/f1"

Scalar = str | int | float | bool


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """``config`` as one level of ``a.b.c`` keys; a null or a list becomes its JSON text."""
    flat: dict[str, Scalar] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{name}."))
        elif isinstance(value, str | int | float | bool):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def step_scalars(loss: float, learning_rates: Mapping[str, float]) -> dict[str, float]:
    """One optimiser step's loss and each parameter group's learning rate."""
    return {"train/loss": loss, **{f"lr/{group}": rate for group, rate in learning_rates.items()}}


def type_scores(prefix: str, scores: Mapping[str, Any]) -> dict[str, float]:
    """``<prefix>/<type>/<score>`` for micro and each entity type of a :func:`umt.pipeline.metrics.score`
    result (its primary scheme)."""
    primary = scores[PRIMARY]
    by_type = {"micro": primary, **primary["per_type"]}
    return {f"{prefix}/{kind}/{key}": float(row[key]) for kind, row in by_type.items() for key in SCORES}


def final_scores(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A finished run's dev and test scores per type, from its ``metrics.json``."""
    return {**type_scores("final/dev", metrics["valid"]), **type_scores("final/test", metrics["test"])}
