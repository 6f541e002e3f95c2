"""The typed request of every command: what ``cli`` parses the flags into and ``stages.*`` run.

One convention for every stage: the module ``umt.stages.<command>`` exposes
``run(request, console=None)``, and its request type lives here (``umt models``, which has no
options, takes ``run(console=None)``). This module imports no torch,
h5py or transformers, so the CLI builds and checks a request (bad numbers, missing paths) in a
fraction of a second, before any model is loaded. Each request checks itself on construction.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from umt.cache.paths import Shard
from umt.pipeline.errors import ConfigError, did_you_mean
from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.registry import SETTINGS
from umt.pipeline.runtime.devices import check_device_name, check_quantize
from umt.pipeline.sweep.space import SearchSpace, parse_space
from umt.pipeline.tracking import check_log_to
from umt.pipeline.train_config import TrainConfig
from umt.pipeline.vision.backbones import DEFAULT_BACKBONE, get_backbone

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_FAILURES = 30
STORAGE_DTYPES = ("float16", "float32")
EVAL_SPLITS = ("test", "valid", "train")
#: Formats ``umt data import`` reads.
IMPORT_FORMATS = ("twitter", "mner-json")

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_FAILURES",
    "CacheInfoRequest",
    "CacheMergeRequest",
    "DataImportRequest",
    "DataStatsRequest",
    "DemoRequest",
    "EvalRequest",
    "ExportRequest",
    "ServeRequest",
    "SweepRequest",
    "ExtractRequest",
    "PredictRequest",
    "ReportRequest",
    "ReproduceRequest",
    "Shard",
    "TrainRequest",
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
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None  # None: the backbone's default_weights
    dtype: str = "float16"
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    num_workers: int | None = None  # None: one on a CPU, up to eight on a GPU
    amp: bool = True
    shard: Shard | None = None
    strict: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        backbone = get_backbone(self.backbone)
        if self.weights is None:
            object.__setattr__(self, "weights", backbone.default_weights)
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


def model_folder(model: str, backbone: str | None) -> str:
    """A model's runs folder: its name, with the backbone's beside it when that is not the paper's
    (``umt_vit-b16``), so runs of two backbones never share a folder."""
    return model if backbone in (None, DEFAULT_BACKBONE) else f"{model}_{backbone}"


@dataclass(frozen=True)
class TrainRequest:
    """``umt train``: one run per seed of ``model`` on ``dataset``.

    ``explicit`` names the ModelConfig / TrainConfig fields the user gave on the command line
    (typed, or in a ``--config`` experiment file);
    the recipe's ``settings`` (``default`` or ``paper``: ``umt train --recipe``) fill the others
    (:meth:`configs`). None (a request built in
    Python) counts every field that differs from its dataclass default as given. With
    ``resume`` a run continues with the settings it was started with; an explicit setting that
    differs from them is refused (see ``umt.stages.train``). ``log_to`` names the experiment
    trackers of each run (``umt.pipeline.tracking``), ``tracking_uri`` MLflow's store if not the
    run's own; neither is a setting of the run, so a resumed run may add or drop them.
    """

    dataset: str
    model: str
    data_root: Path
    model_cfg: ModelConfig = field(default_factory=ModelConfig)
    train_cfg: TrainConfig = field(default_factory=TrainConfig)
    seeds: tuple[int, ...] | None = None  # None: train_cfg.seed alone
    out: Path | None = None
    features: Path | None = None
    backbone: str | None = None  # the cache's backbone; None: any with --features, else resnet152's cache
    no_images: bool = False
    resume: bool = False
    overwrite: bool = False
    explicit: frozenset[str] | None = None
    settings: str = "default"
    log_to: tuple[str, ...] = ()
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        if self.backbone is not None:
            get_backbone(self.backbone)
        _check_settings(self.settings)
        check_log_to(self.log_to, self.tracking_uri)
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

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        """The configs the runs train with: the user's values, the recipe's ``settings`` elsewhere."""
        recipe = get_recipe(self.model)
        return recipe.defaulted(self.model_cfg, self.train_cfg, self.explicit, self.settings, self.dataset)

    def run_dir(self, seed: int) -> Path:
        """``--out``, or ``runs/<dataset>/<model>/seed<N>``; with several seeds, one folder each under ``--out``."""
        base = self.seeds_dir
        if self.out is None or len(self.seeds) > 1:
            return base / f"seed{seed}"
        return base

    @property
    def seeds_dir(self) -> Path:
        """Where the summary over seeds goes."""
        return (
            self.out if self.out is not None else Path("runs") / self.dataset / model_folder(self.model, self.backbone)
        )


#: Seconds between a sweep worker's heartbeats (a trial silent for twice this is retried).
DEFAULT_HEARTBEAT = 30.0


@dataclass(frozen=True)
class SweepRequest:
    """``umt sweep``: trials of ``base`` (one seed) over ``grid`` or ``space`` (with ``trials``).

    ``out`` is the sweep folder (default ``runs/<dataset>/<model>/sweep``): its ``sweep.json``,
    a SQLite storage unless ``storage`` names a database, one run folder per trial, and the
    results. ``best`` prints the best trial and its ``umt train`` command without training.
    """

    base: TrainRequest
    grid: str = ""
    space: str = ""
    trials: int | None = None
    out: Path | None = None
    storage: str | None = None
    study: str | None = None
    prune: bool = True
    heartbeat: float = DEFAULT_HEARTBEAT
    best: bool = False

    def __post_init__(self) -> None:
        if bool(self.grid.strip()) == bool(self.space.strip()):
            raise ConfigError("give --grid (every combination) or --space with --trials (a TPE search), not both")
        if self.space.strip() and (self.trials is None or self.trials < 1):
            raise ConfigError("--space needs --trials N (N >= 1): how many trials TPE proposes")
        if self.grid.strip() and self.trials is not None:
            raise ConfigError("--trials is for --space: a --grid runs every combination once")
        if len(self.base.seeds) != 1:
            raise ConfigError(
                "a sweep trains one seed per trial (selection on dev); run the best settings over --seeds afterwards"
            )
        if self.base.resume or self.base.overwrite:
            raise ConfigError("--resume / --overwrite: a sweep resumes by itself; run the same command again")
        if importlib.util.find_spec("optuna") is None:
            raise ConfigError("umt sweep runs on Optuna, which is not installed: pip install 'umt[sweep]'")
        if not 0 < self.heartbeat <= 3600:
            raise ConfigError(f"--heartbeat must be between 0 and 3600 seconds, got {self.heartbeat}")
        self.search_space()  # a bad grid or space is reported before anything loads

    def search_space(self) -> SearchSpace:
        return parse_space(self.grid, "--grid") if self.grid.strip() else parse_space(self.space, "--space")

    @property
    def folder(self) -> Path:
        return self.out if self.out is not None else Path("runs") / self.base.dataset / self.base.model / "sweep"

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.folder / 'optuna.db').resolve()}"

    @property
    def study_name(self) -> str:
        return self.study or f"{self.base.dataset}/{self.base.model}/{self.folder.name}"


@dataclass(frozen=True)
class EvalRequest:
    run: Path | str  # a run directory, an exported folder or a hub id (umt.pipeline.sharing.source)
    split: str = "test"
    data: Path | None = None
    data_root: Path | None = None
    features: Path | None = None
    out: Path | None = None
    device: str = "auto"
    quantize: str = "none"

    def __post_init__(self) -> None:
        check_quantize(self.quantize)
        if self.split not in EVAL_SPLITS:
            raise ConfigError(f"--split {self.split!r}: expected one of {', '.join(EVAL_SPLITS)}")
        check_device_name(self.device)


@dataclass(frozen=True)
class ExportRequest:
    """Options of ``umt export``."""

    run: Path
    out: Path
    name: str | None = None
    overwrite: bool = False


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeRequest:
    """Options of ``umt serve`` (the CLI help describes each)."""

    run: Path | str  # a run directory, an exported folder or a hub id
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None  # default: $UMT_SERVE_TOKEN
    no_token: bool = False  # allow a non-loopback host without a token
    device: str = "auto"
    quantize: str = "none"
    images: Path | None = None
    image_cache: Path | None = None
    weights: str | None = None
    max_posts: int = 64
    max_image_mb: int = 8
    max_pixels: int = 40_000_000
    max_body_mb: int = 32
    max_batch: int = 64
    max_wait_ms: float = 5.0
    max_queued: int = 4096

    def __post_init__(self) -> None:
        check_device_name(self.device)
        check_quantize(self.quantize)
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: expected 0 to 65535")
        for name in ("max_posts", "max_image_mb", "max_pixels", "max_body_mb", "max_batch", "max_queued"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ConfigError("--max-wait-ms must be between 0 and 1000")
        if self.images is not None and not Path(self.images).is_dir():
            raise ConfigError(f"--images {self.images}: no such folder")
        if self.host not in LOOPBACK_HOSTS and not self.token and not self.no_token:
            raise ConfigError(
                f"--host {self.host} makes the model reachable from other machines: protect it with --token "
                "(or $UMT_SERVE_TOKEN), or pass --no-token to serve it open"
            )


@dataclass(frozen=True)
class PredictRequest:
    """Options of ``umt predict`` (the CLI help describes each). ``input``/``output`` None: stdin/stdout."""

    run: Path | str  # a run directory, an exported folder or a hub id (umt.pipeline.sharing.source)
    input: Path | None = None
    output: Path | None = None
    images: Path | None = None
    format: str | None = None  # jsonl or csv; None: from the input's suffix (stdin: jsonl)
    tokenizer: str | None = None  # None: the style the run's training data used
    features: Path | None = None
    weights: str | None = None
    image_cache: Path | None = None
    explain: Path | None = None
    strict: bool = False
    device: str = "auto"
    batch_size: int | None = None
    chunk_size: int = 256
    any_image_path: bool = False  # let 'image' be any path, not only a file inside --images or the input's folder
    max_image_mb: int = 32  # an image file larger than this is refused before it is read
    image_cache_mb: int = 2048  # the predict image cache's size cap (least recently used grids go first); 0: none
    quantize: str = "none"  # int8: dynamic quantization for CPU inference

    def __post_init__(self) -> None:
        from umt.pipeline.data.new_posts import FORMATS

        check_quantize(self.quantize)
        from umt.pipeline.text.tweets import STYLES

        if self.max_image_mb < 1 or self.image_cache_mb < 0:
            raise ConfigError("--max-image-mb must be at least 1 and --image-cache-mb 0 or more")

        check_device_name(self.device)
        if self.format is not None and self.format not in FORMATS:
            raise ConfigError(f"--format {self.format!r}: expected one of {', '.join(FORMATS)}")
        if self.tokenizer is not None and self.tokenizer not in STYLES:
            raise ConfigError(f"--tokenizer {self.tokenizer!r}: expected one of {', '.join(STYLES)}")
        if self.input is not None and not Path(self.input).exists():
            raise ConfigError(f"--input {self.input}: no such file or folder")
        if self.input is not None and Path(self.input).is_dir() and self.format not in (None, "folder"):
            raise ConfigError(f"--input {self.input} is a folder: --format {self.format} reads a file")
        if self.images is not None and not Path(self.images).is_dir():
            raise ConfigError(f"--images {self.images}: no such folder")
        if self.features is not None and not Path(self.features).is_file():
            raise ConfigError(f"--features {self.features}: no such file")
        if (self.batch_size is not None and self.batch_size < 1) or self.chunk_size < 1:
            raise ConfigError("--batch-size and the chunk size must be at least 1")

    @property
    def input_format(self) -> str:
        if self.format is not None:
            return self.format
        if self.input is not None and Path(self.input).is_dir():
            return "folder"
        return "csv" if self.input is not None and Path(self.input).suffix.lower() == ".csv" else "jsonl"


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


#: The files ``umt report --out`` can write: Markdown, CSV and a LaTeX (booktabs) tabular.
REPORT_FORMATS = ("md", "csv", "tex")


@dataclass(frozen=True)
class ReportRequest:
    """``umt report``: the paper's Table 2 (or, with ``ablations``, Table 3) from the runs under ``runs``.

    ``formats`` None means every format when ``out`` is given and none otherwise; ``cases`` is
    the number of case-study posts per dataset (0: none); ``resamples`` the swap patterns of
    each significance test. ``pick`` (dev, latest, first) says which configuration of a row and
    which run of a seed count, and ``where`` (``setting=value`` each) which configurations may;
    the stage checks these two (``umt.pipeline.report.choose.Pick.parse``) before it reads a run.
    """

    runs: Path = Path("runs")
    ablations: bool = False
    paper: bool = False
    figures: bool = False
    out: Path | None = None
    formats: tuple[str, ...] | None = None
    cases: int = 5
    resamples: int = 10_000
    pick: str = "dev"
    where: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.formats is None:
            object.__setattr__(self, "formats", REPORT_FORMATS if self.out is not None else ())
        unknown = [f for f in self.formats if f not in REPORT_FORMATS]
        if unknown:
            raise ConfigError(f"--format {','.join(unknown)}: expected some of {','.join(REPORT_FORMATS)}")
        if self.out is None and (self.formats or self.figures):
            what = "--figures" if self.figures else "--format"
            raise ConfigError(f"{what} writes files: give the folder with --out DIR")
        if self.out is not None and Path(self.out).exists() and not Path(self.out).is_dir():
            raise ConfigError(f"--out {self.out} is a file; give a folder")
        if self.cases < 0:
            raise ConfigError(f"--cases must be 0 or more, got {self.cases}")
        if self.resamples < 1:
            raise ConfigError(f"--resamples must be at least 1, got {self.resamples}")


def _check_settings(settings: str) -> None:
    if settings not in SETTINGS:
        hint = did_you_mean(settings, SETTINGS)
        raise ConfigError(f"--recipe {settings!r}{hint}: choose one of {', '.join(SETTINGS)}")


#: What ``umt reproduce --systems`` accepts besides comma-separated model names.
SYSTEM_SETS = ("table2", "table3", "all")


@dataclass(frozen=True)
class ReproduceRequest:
    """``umt reproduce``: extract, train every system and seed with the paper's settings, report.

    ``settings`` are the recipe settings every system trains with (``paper`` unless
    ``--recipe default``); ``train_overrides`` are TrainConfig fields the user gave
    (``--epochs`` ...): they replace those settings for every system. ``backbone`` is the image
    backbone of every text+image run (its default cache, extracted first if missing, with
    ``weights``). ``log_to`` and ``tracking_uri``: every
    run's trackers, as ``umt train``'s.
    """

    dataset: str
    data_root: Path
    seeds: tuple[int, ...] = (1, 2, 3)
    systems: str = "table2"
    encoder: str = "bert-base-cased"
    word_vectors: str = ""
    features: Path | None = None
    no_images: bool = False
    backbone: str = DEFAULT_BACKBONE
    weights: str | None = None  # None: the backbone's default_weights
    runs: Path = Path("runs")
    device: str = "auto"
    train_overrides: dict = field(default_factory=dict)
    dry_run: bool = False
    settings: str = "paper"
    log_to: tuple[str, ...] = ()
    tracking_uri: str | None = None

    def __post_init__(self) -> None:
        get_backbone(self.backbone)
        _check_settings(self.settings)
        check_log_to(self.log_to, self.tracking_uri)
        check_device_name(self.device)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("--seeds: give distinct seeds, e.g. 1,2,3")
        if self.features is not None and not Path(self.features).is_file():
            raise ConfigError(f"--features {self.features}: no such file")
        unknown = set(self.train_overrides) - set(TrainConfig().to_dict())
        if unknown:
            raise ConfigError(f"unknown training settings: {', '.join(sorted(unknown))}")
        TrainConfig(**self.train_overrides)  # checks the values
