"""Training settings, kept free of heavy imports so the CLI can show their defaults fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class TrainConfig:
    """Optimisation settings. Defaults follow the paper's section 3.1 where it gives them."""

    epochs: int = 10  # the paper does not state it; 10 passes of Twitter-2017 is ~2.1k steps at batch 16
    batch_size: int = 16  # paper
    eval_batch_size: int = 64
    lr: float = 5e-5  # paper
    warmup: float = 0.1  # fraction of all steps with linear warm-up, then linear decay (BERT recipe)
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int = 128  # paper: maximum sub-word sequence length
    stride: int = 32  # sub-word pieces of context shared by neighbouring windows of an over-long post
    standardize_visual: bool = False  # per-channel standardisation of the grids (pipeline.data.visual_stats)
    seed: int = 1
    device: str = "auto"
    num_workers: int = 0  # DataLoader workers reading the feature cache
    amp: bool = True  # bf16 autocast on CUDA only; CPU always runs fp32

    def to_dict(self) -> dict:
        return asdict(self)
