"""The typed request of every command: what ``cli`` parses the flags into and ``stages.*`` run.

One convention for every stage: the module ``umt.stages.<command>`` exposes
``run(request, console=None)``, and its request type lives here (``umt models``, which has no
options, takes ``run(console=None)``). This module imports no torch,
h5py or transformers, so the CLI builds and checks a request (bad numbers, missing paths) in a
fraction of a second, before any model is loaded. Each request checks itself on construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from umt.cache.paths import Shard
from umt.pipeline.devices import check_device_name
from umt.pipeline.errors import ConfigError
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_FAILURES = 30
STORAGE_DTYPES = ("float16", "float32")
EVAL_SPLITS = ("test", "valid", "train")
#: Formats ``umt data import`` reads.
IMPORT_FORMATS = ("twitter", "mner-json")

__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_MAX_FAILURES", "CacheInfoRequest", "CacheMergeRequest", "DataImportRequest",
    "DataStatsRequest", "DemoRequest", "EvalRequest", "ExtractRequest", "Shard", "TrainRequest",
]


@dataclass(frozen=True)
class DataStatsRequest:
    dataset: str
    data_root: Path | None = None
    images: Path | None = None


@dataclass(frozen=True)
class DataImportRequest:
    """``umt data import``: bring a dataset in another layout into ``<data_root>/<name>``."""

    source: Path
    format: str
    name: str
    data_root: Path | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.format not in IMPORT_FORMATS:
            raise ConfigError(f"--format {self.format!r}: expected one of {', '.join(IMPORT_FORMATS)}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"--name {self.name!r}: expected a plain folder name")
        if not Path(self.source).exists():
            raise ConfigError(f"{self.source} does not exist")


@dataclass(frozen=True)
class ExtractRequest:
    """Options of ``umt extract-images`` (the CLI help describes each)."""

    dataset: str | None = None
    data_root: Path | None = None
    images: Path | None = None
    ids_from: Path | None = None
    out: Path | None = None
    weights: str = "imagenet"
    dtype: str = "float16"
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    num_workers: int | None = None  # None: one on a CPU, up to eight on a GPU
    amp: bool = True
    shard: Shard | None = None
    strict: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in STORAGE_DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r}: expected one of {', '.join(STORAGE_DTYPES)}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"--num-workers must be 0 or more, got {self.num_workers}")
        check_device_name(self.device)


@dataclass(frozen=True)
class CacheInfoRequest:
    path: Path
    max_failures: int = DEFAULT_MAX_FAILURES  # 0 lists every failure


@dataclass(frozen=True)
class CacheMergeRequest:
    out: Path
    shards: list[Path] = field(default_factory=list)
    overwrite: bool = False


@dataclass(frozen=True)
class TrainRequest:
    """``umt train``: one run per seed of ``model`` on ``dataset``.

    ``explicit`` names the ModelConfig / TrainConfig fields the user gave on the command line;
    the recipe's defaults fill the others (``Recipe.defaulted``). None (a request built in
    Python) counts every field that differs from its dataclass default as given. With
    ``resume`` a run continues with the settings it was started with; an explicit setting that
    differs from them is refused (see ``umt.stages.train``).
    """

    dataset: str
    model: str
    data_root: Path
    model_cfg: ModelConfig = field(default_factory=ModelConfig)
    train_cfg: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] | None = None  # None: train_cfg.seed alone
    out: Path | None = None
    features: Path | None = None
    no_images: bool = False
    resume: bool = False
    overwrite: bool = False
    explicit: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.explicit is None:
            given = {
                name
                for config, default in ((self.model_cfg, ModelConfig()), (self.train_cfg, TrainConfig()))
                for name, value in config.to_dict().items()
                if value != getattr(default, name)
            }
            object.__setattr__(self, "explicit", frozenset(given))
        if self.seeds is None:
            object.__setattr__(self, "seeds", (self.train_cfg.seed,))
        if not self.seeds:
            raise ConfigError("--seeds: give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds {','.join(map(str, self.seeds))}: a seed is repeated")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: pick one")
        check_device_name(self.train_cfg.device)

    def run_dir(self, seed: int) -> Path:
        """``--out``, or ``runs/<dataset>/<model>/seed<N>``; with several seeds, one folder each under ``--out``."""
        base = self.out if self.out is not None else Path("runs") / self.dataset / self.model
        if self.out is None or len(self.seeds) > 1:
            return base / f"seed{seed}"
        return base

    @property
    def seeds_dir(self) -> Path:
        """Where the summary over seeds goes."""
        return self.out if self.out is not None else Path("runs") / self.dataset / self.model


@dataclass(frozen=True)
class EvalRequest:
    run: Path
    split: str = "test"
    data: Path | None = None
    data_root: Path | None = None
    features: Path | None = None
    out: Path | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.split not in EVAL_SPLITS:
            raise ConfigError(f"--split {self.split!r}: expected one of {', '.join(EVAL_SPLITS)}")
        check_device_name(self.device)


@dataclass(frozen=True)
class DemoRequest:
    out: Path = Path("demo_out")
    seed: int = 0
    epochs: int = 12
    lr: float = 1e-3  # a tiny random encoder needs a larger step than fine-tuning BERT (5e-5)
    batch_size: int = 16
    hidden: int = 48
    layers: int = 2
    heads: int = 4
    extract_batch_size: int = 16
    num_workers: int = 2
    fresh: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {self.epochs}")
