"""Training settings, kept free of heavy imports so the CLI can show and check them at once.

How posts are cut into windows (``max_length``, ``stride``) is the text side's business and
lives in :class:`umt.pipeline.models.config.ModelConfig`; runs written before the move stored
them here, and ``umt.pipeline.run_dir.RunConfig`` reads those runs (:data:`MOVED_TO_MODEL`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from umt.pipeline.errors import ConfigError
from umt.pipeline.typed_fields import check_field_types

#: Settings stored in a run's ``"train"`` before they moved to the model config (the text side's).
MOVED_TO_MODEL = ("max_length", "stride")
#: Settings that change how a run is computed but not what it computes; a resumed run may change them.
RUNTIME_FIELDS = ("device", "num_workers", "eval_batch_size", "compile")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("linear", "cosine", "constant", "inverse")
#: auto: bf16 autocast on a CUDA device that supports it, else fp32 (on a CPU bf16 is ~10x slower).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings. Defaults follow the paper's section 3.1 where it gives them."""

    epochs: int = 10  # the paper does not state it; 10 passes of Twitter-2017 is ~2.1k steps at batch 16
    batch_size: int = 16  # paper
    eval_batch_size: int = 64
    lr: float = 5e-5  # paper; the pre-trained encoder's learning rate
    head_lr: float = 1e-3  # parameters added to a pre-trained encoder (layers, emissions, CRF); 0: --lr
    optimizer: str = "adamw"  # adamw (BERT recipe) or sgd (with momentum; the LSTM baselines)
    momentum: float = 0.9  # sgd only
    schedule: str = "linear"  # warm-up, then linear/cosine decay to 0, or constant; inverse: lr / (1 + decay * epoch)
    warmup: float = 0.1  # linear, cosine, constant: fraction of all steps with linear warm-up (BERT recipe)
    lr_decay: float = 0.05  # inverse schedule: decay per epoch (Ma and Hovy, 2016)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    grad_accum: int = 1  # each step's batch_size posts in this many sequential parts (same step, less memory)
    bucket: int = 0  # length-bucketed steps: sort windows by length within pools of this many steps; 0: off
    patience: int = 0  # stop after this many epochs without a better dev F1; 0: train every epoch
    standardize_visual: bool = False  # per-channel standardisation of the grids (pipeline.data.visual_stats)
    seed: int = 1
    device: str = "auto"
    num_workers: int = 0  # DataLoader workers reading the feature cache
    precision: str = "auto"  # autocast dtype: auto, fp32, bf16, fp16 (fp16 on CUDA, with loss scaling)
    compile: bool = False  # torch.compile the model (pays on a GPU for long runs)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """A stored config; runs written before ``precision`` existed stored ``amp`` instead."""
        data = dict(data)
        if "amp" in data:
            data.setdefault("precision", "auto" if data.pop("amp") else "fp32")
        return cls(**data)

    def __post_init__(self) -> None:
        check_field_types(self, "")
        at_least = {
            "epochs": 1, "batch_size": 1, "eval_batch_size": 1, "num_workers": 0,
            "grad_accum": 1, "patience": 0, "bucket": 0,
        }  # fmt: skip
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ConfigError(f"{_flag(name)} must be at least {low}, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if self.head_lr < 0:
            raise ConfigError(f"--set head_lr must be 0 (same as --lr) or positive, got {self.head_lr}")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("precision", PRECISIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--set {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if not 0.0 <= self.momentum < 1.0 or self.lr_decay < 0:
            raise ConfigError(
                f"--set momentum must be in [0, 1) and lr_decay >= 0, got {self.momentum}, {self.lr_decay}"
            )
        if not 0.0 <= self.warmup <= 1.0:
            raise ConfigError(f"--set warmup must be a fraction of the steps in [0, 1], got {self.warmup}")
        if self.weight_decay < 0 or self.max_grad_norm <= 0:
            raise ConfigError(
                f"--set weight_decay must be >= 0 and max_grad_norm > 0, got {self.weight_decay}, {self.max_grad_norm}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def _flag(name: str) -> str:
    """How the user sets ``name``: a flag of its own, or ``--set``."""
    own = {"epochs", "batch_size", "num_workers", "precision"}
    return f"--{name.replace('_', '-')}" if name in own else f"--set {name}"
