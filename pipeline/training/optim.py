"""What the optimiser steps: parameter groups, the optimiser and its per-step schedule.

Parameter groups: a pre-trained encoder's parameters train at ``lr`` and every other one at
``head_lr`` (``lr`` when it is 0). Weight decay skips biases and norm gains (every parameter of
fewer than two dimensions) and every parameter of a module that declares
``no_weight_decay = True`` (W^c: :class:`umt.pipeline.heads.conversion.LabelConversion`), so
renaming an attribute cannot change what decays.
"""

from __future__ import annotations

import math

import torch

from umt.pipeline.train_config import TrainConfig


def _exempt_from_decay(model: torch.nn.Module) -> set[int]:
    """The ids of the parameters of every module that declares ``no_weight_decay``."""
    return {id(p) for m in model.modules() if getattr(m, "no_weight_decay", False) for p in m.parameters()}


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: a pre-trained encoder's parameters at ``lr``, every
    other one at ``head_lr`` (``lr`` when 0, and in a model with no pre-trained encoder, where
    everything trains from scratch); biases, norms and W^c without weight decay."""
    pretrained = {id(p) for m in model.modules() if getattr(m, "pretrained", False) for p in m.parameters()}
    head_lr = cfg.head_lr if cfg.head_lr and pretrained else cfg.lr
    no_decay = _exempt_from_decay(model)
    groups: dict[tuple[str, float, float], list[torch.nn.Parameter]] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        name = ("encoder" if id(param) in pretrained else "head") if pretrained else "model"
        lr = cfg.lr if id(param) in pretrained else head_lr
        exempt = param.ndim < 2 or id(param) in no_decay
        groups.setdefault((name, lr, 0.0 if exempt else cfg.weight_decay), []).append(param)
    return [
        {"params": params, "lr": lr, "weight_decay": decay, "name": name}
        for (name, lr, decay), params in groups.items()
    ]


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int, device: torch.device | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The optimiser (AdamW, fused on CUDA, or SGD with momentum) and its per-step schedule.

    ``linear`` / ``cosine`` / ``constant``: warm-up over ``warmup`` of all steps, then linear or
    cosine decay to 0, or constant (``linear`` is the BERT recipe).
    ``inverse``: lr / (1 + lr_decay * epoch), constant within an epoch (Ma and Hovy, 2016).
    """
    groups = param_groups(model, cfg)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, fused=device is not None and device.type == "cuda")
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup * total_steps))

    def factor(step: int) -> float:
        if cfg.schedule == "inverse":
            return 1.0 / (1.0 + cfg.lr_decay * (step // steps_per_epoch))
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 if cfg.schedule == "constant" else 1.0 - progress

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
