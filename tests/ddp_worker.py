"""Run by the distributed tests under torchrun: ``umt.stages.train.run`` from a JSON request,
optionally stopped after an epoch as if killed there (what ``stop_after_epoch`` lets tests do)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig
from umt.stages import train
from umt.stages.requests import TrainRequest

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    stop = spec.pop("stop_after_epoch", None)
    request = TrainRequest(
        dataset=spec["dataset"],
        model=spec["model"],
        data_root=Path(spec["data_root"]),
        model_cfg=ModelConfig(**spec["model_cfg"]),
        train_cfg=TrainConfig(**spec["train_cfg"]),
        out=Path(spec["out"]),
        resume=spec.get("resume", False),
    )
    train.run(request, stop_after_epoch=None if stop is None else (lambda epoch: epoch == stop))
