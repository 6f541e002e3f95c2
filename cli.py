"""The ``umt`` command line: flags -> a typed request (``umt.stages.requests``) -> ``stages.<command>.run``.

No logic lives here beyond parsing: ``--set key=value`` and ``--seeds`` are parsed into the typed
configs, which check themselves, so bad arguments are reported before any model loads. User
errors print as one red line and exit with status 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # umt draws its own progress bars

import typer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape

from umt import experiment_file  # noqa: E402
from umt.pipeline.errors import USER_ERRORS, ConfigError, UmtError  # noqa: E402
from umt.pipeline.models.config import ModelConfig  # noqa: E402
from umt.pipeline.tracking import parse_log_to  # noqa: E402
from umt.pipeline.train_config import TrainConfig  # noqa: E402
from umt.pipeline.vision.backbones import backbone_names, get_backbone  # noqa: E402
from umt.stages import requests  # noqa: E402


class Interrupted(UmtError):
    """Ctrl-C outside training (training says which epoch it reached: ``TrainingInterrupted``)."""

    exit_code = 130


def _command(group: typer.Typer, name: str):
    """``group.command(name)``, with Ctrl-C turned into :class:`Interrupted`.

    Left alone, the Ctrl-C would reach click, which prints "Aborted!" and exits with status 1;
    as a user error it reaches :func:`main` (exit status 130, one line).
    """

    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def guarded(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except KeyboardInterrupt:
                raise Interrupted("interrupted") from None

        return group.command(name)(guarded)

    return decorate


app = typer.Typer(
    help="umt: multimodal named entity recognition (UMT, Yu et al. 2020) from tweets + images "
    "to trained models, result tables and tags.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and import datasets.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect and merge image-feature caches.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")
err = Console(stderr=True)

# Defaults shown in --help are read from the typed configs so they cannot drift from the code.
_X = requests.ExtractRequest()
_T = TrainConfig()
_D = requests.DemoRequest()
_R = requests.ReportRequest()
_P = requests.PredictRequest(run=Path("."))
_SOURCE_HELP = (
    "A run directory written by `umt train`, a folder written by `umt export`, or a hub id "
    "owner/name (from the Hugging Face cache)."
)
_QUANTIZE_HELP = "none (fp32) or int8: int8 dynamic quantization of the linear layers, for faster CPU inference."
_LOG_TO_HELP = (
    "Experiment trackers of each run, comma-separated: tensorboard (RUN/tb/), mlflow (RUN/mlflow.db, or "
    "--tracking-uri), wandb (offline, RUN/wandb/). Off by default; docs/training.md, Tracking."
)
_BACKBONE_HELP = (
    "Frozen image backbone: "
    + "; ".join(f"{b.name} ({b.grid})" for b in (get_backbone(n) for n in backbone_names()))
    + ". docs/image-features.md, Backbones."
)
_WEIGHTS_HELP = (
    "The backbone's weights. torchvision CNNs: imagenet (torchvision's download; default), random (tests, demos) "
    "or a state_dict PATH. ViTs: a Hugging Face name (default: the backbone's) or local folder with safetensors "
    "weights, or random."
)
_TRACKING_URI_HELP = "MLflow store for --log-to mlflow, e.g. sqlite:///runs/mlflow.db (default: RUN/mlflow.db)."


def _data_root(value: Path | None) -> Path:
    from umt.pipeline.data.layout import default_data_root

    return value if value is not None else default_data_root()


# ---- parsing the free-form options ---------------------------------------------------------


def parse_overrides(pairs: list[str]) -> dict[str, dict[str, object]]:
    """``key=value`` strings -> ``{"model": {...}, "train": {...}}`` by which config has the key."""
    from umt.pipeline.settings import GROUPS, parse_value, setting_name

    out: dict[str, dict[str, object]] = {"model": {}, "train": {}}
    for pair in pairs:
        raw_key, sep, raw = pair.partition("=")
        if not sep or not raw_key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key = setting_name(raw_key, f"--set {raw_key.strip()}")
        out[GROUPS[key]][key] = parse_value(key, raw, f"--set {key}={raw.strip()}")
    return out


def _configs(
    ctx: typer.Context, encoder: str, word_vectors: str, set_: list[str], flags: dict[str, object], seed: int
) -> tuple[ModelConfig, TrainConfig, frozenset[str]]:
    """The configs of a training command's options, ``flags`` (TrainConfig options) and ``--set``
    (which wins), and the names of the settings the user gave (the recipe fills the others)."""
    from umt.pipeline.text.vectors import vectors_source

    overrides = parse_overrides(set_)
    model_cfg = ModelConfig(**{"encoder": encoder, "word_vectors": vectors_source(word_vectors), **overrides["model"]})
    train_cfg = TrainConfig(**{**flags, "seed": seed, **overrides["train"]})
    explicit = _given(ctx, "encoder", "word_vectors", *flags) | set(overrides["model"]) | set(overrides["train"])
    return model_cfg, train_cfg, frozenset(explicit)


def parse_seeds(text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: expected comma-separated whole numbers, e.g. 1,2,3") from None


def _given(ctx: typer.Context, *names: str) -> set[str]:
    """The options among ``names`` that the user gave, typed or in the ``--config`` file (not left at
    their default): a recipe's setting yields to either."""
    return {n for n in names if getattr(ctx.get_parameter_source(n), "name", None) in ("COMMANDLINE", "DEFAULT_MAP")}


# ---- data ----------------------------------------------------------------------------------


@_command(data_app, "stats")
def data_stats_cmd(
    dataset: str = typer.Option(
        ..., "--dataset", help="Dataset name: the folder <data-root>/<dataset> holding train/valid/test."
    ),
    data_root: Path | None = typer.Option(
        None,
        "--data-root",
        help="Folder holding the datasets (default: $UMT_DATA_ROOT, else ./data).",
        show_default=False,
    ),
    images: Path | None = typer.Option(
        None,
        "--images",
        help="Image folder to check for missing files (default: <data-root>/<dataset>_images).",
        show_default=False,
    ),
) -> None:
    """Tweets, tokens, entities per type (counted as seqeval scores them), image ids and missing
    image files, per split."""
    from umt.stages import data_stats

    data_stats.run(requests.DataStatsRequest(dataset, data_root=data_root, images=images))


@_command(data_app, "import")
def data_import_cmd(
    source: Path = typer.Argument(..., help="What to import: a folder (or, for twitter, a folder of split files)."),
    format: str = typer.Option(
        ...,
        "--format",
        help="twitter: a folder with train/valid/test (.txt, Twitter format; dev.txt accepted) and optionally "
        "images/. mner-json: the JSON-lines layout of RiTUAL-UH/multimodal_NER (texts/<split>/<split>.json, "
        "images/<split>/).",
    ),
    name: str = typer.Option(..., "--name", help="Dataset name to create under the data root."),
    data_root: Path | None = typer.Option(None, help="Data root to write into (default: $UMT_DATA_ROOT or ./data)."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset of that name."),
) -> None:
    """Bring a dataset in another layout into <data-root>/<name> (+ <name>_images), ready for
    `umt extract-images --dataset NAME` and `umt train --dataset NAME`."""
    from umt.stages import data_import

    data_import.run(
        requests.DataImportRequest(source, format, name, data_root=_data_root(data_root), overwrite=overwrite)
    )


# ---- stage one: extract-images and the cache -----------------------------------------------


@_command(app, "extract-images")
def extract_images_cmd(
    dataset: str | None = typer.Option(
        None, help="Dataset under the data root: ids from its train/valid/test files, images from <root>/<name>_images."
    ),
    data_root: Path | None = typer.Option(None, help="Data root (default: $UMT_DATA_ROOT or ./data)."),
    images: Path | None = typer.Option(
        None, help="Image folder (default with --dataset: <root>/<name>_images); alone: extract every image in it."
    ),
    ids_from: Path | None = typer.Option(
        None, help="With --images: extract only the ids listed in FILE, one per line."
    ),
    out: Path | None = typer.Option(
        None, help="Cache file to write (default with --dataset: <root>/<name>_<backbone>.h5; required with --images)."
    ),
    backbone: str = typer.Option(_X.backbone, help=_BACKBONE_HELP),
    weights: str | None = typer.Option(None, help=_WEIGHTS_HELP, show_default=False),
    dtype: str = typer.Option(_X.dtype, help="Storage dtype of the grids: float16 or float32."),
    device: str = typer.Option(_X.device, help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(_X.batch_size, help="Images per forward pass (fixed for a resumed run)."),
    num_workers: int | None = typer.Option(
        None, help="Image-decoding worker processes (default: 1 on a CPU, up to 8 on a GPU)."
    ),
    amp: bool = typer.Option(_X.amp, help="Mixed precision (float16 autocast) on CUDA; no effect on a CPU."),
    shard: str | None = typer.Option(
        None, help="K/N: compute only shard K of N into <out stem>.shard-K-of-N.h5; join with `umt cache merge`."
    ),
    strict: bool = typer.Option(False, help="Exit with an error if any image is missing or unreadable."),
    overwrite: bool = typer.Option(
        False, help="Replace an existing cache or unfinished work made with other settings."
    ),
) -> None:
    """Stage one: run a frozen image backbone over the images into an HDF5 cache (ResNet-152's 7x7x2048
    grid per image by default; --backbone for the others).

    Resumable: after an interruption, run the same command again.
    """
    from umt.stages import extract_images

    extract_images.run(
        requests.ExtractRequest(
            dataset=dataset,
            data_root=data_root,
            images=images,
            ids_from=ids_from,
            out=out,
            backbone=backbone,
            weights=weights,
            dtype=dtype,
            device=device,
            batch_size=batch_size,
            num_workers=num_workers,
            amp=amp,
            shard=requests.Shard.parse(shard) if shard else None,
            strict=strict,
            overwrite=overwrite,
        )
    )


@_command(cache_app, "info")
def cache_info_cmd(
    file: Path = typer.Argument(..., help="Cache file written by `umt extract-images` or `umt cache merge`."),
    max_failures: int = typer.Option(requests.DEFAULT_MAX_FAILURES, help="Failed images to list (0: all)."),
) -> None:
    """Show a cache's manifest, size on disk, counts by status and its failed images."""
    from umt.stages import cache_info

    cache_info.run(requests.CacheInfoRequest(path=file, max_failures=max_failures))


@_command(cache_app, "merge")
def cache_merge_cmd(
    out: Path = typer.Argument(..., help="Cache file to write."),
    shards: list[Path] = typer.Argument(..., help="All N shard files of one `extract-images --shard K/N` run."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
) -> None:
    """Join the shard files of a sharded extraction into one cache (identical to a single run)."""
    from umt.stages import cache_merge

    cache_merge.run(requests.CacheMergeRequest(out=out, shards=shards, overwrite=overwrite))


# ---- stage two: models, train, eval, demo --------------------------------------------------


@_command(app, "models")
def models_cmd(
    defaults: bool = typer.Option(False, "--defaults", help="Also show each model's training defaults."),
) -> None:
    """List the registered models (the names `umt train --model` accepts) with their paper rows."""
    from umt.stages import models

    models.run(defaults=defaults)


@_command(app, "train")
def train_cmd(
    ctx: typer.Context,
    dataset: str = typer.Option("twitter2017", help="Dataset folder under the data root (train/valid/test files)."),
    model: str = typer.Option("umt", help="Registered model name; `umt models` lists them."),
    encoder: str = typer.Option(
        "bert-base-cased", help="Hugging Face encoder name or local model folder (the BERT models)."
    ),
    word_vectors: str = typer.Option(
        "",
        help="Pre-trained word vectors for the BiLSTM models: a GloVe / word2vec text file, a .npy matrix "
        "with its vocabulary file beside it (or their folder), or 'random' for random embeddings.",
    ),
    features: Path | None = typer.Option(
        None,
        help="Image-feature cache from `umt extract-images` (default: the one written for --dataset and --backbone).",
    ),
    backbone: str | None = typer.Option(
        None,
        help="Image backbone of the features: finds <root>/<dataset>_<backbone>.h5 without --features and refuses a "
        "cache of another (default: resnet152's cache, or any --features). The model takes the cache's grid shape.",
        show_default=False,
    ),
    no_images: bool = typer.Option(
        False, "--no-images", help="Train a multimodal model with every image absent (no cache needed)."
    ),
    epochs: int = typer.Option(_T.epochs, help="Training epochs (default: the model's; `umt models --defaults`)."),
    batch_size: int = typer.Option(
        _T.batch_size, help="Posts (windows) per optimiser step, over all processes (default: the model's)."
    ),
    lr: float = typer.Option(_T.lr, help="Peak learning rate (default: the model's)."),
    seed: int = typer.Option(_T.seed, help="Random seed."),
    seeds: str | None = typer.Option(
        None,
        callback=experiment_file.file_checked(parse_seeds),
        help="Comma-separated seeds, one run each, e.g. 1,2,3 (overrides --seed).",
    ),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/<dataset>/<model>/seed<N>)."),
    data_root: Path | None = typer.Option(None, help="Data root (default: $UMT_DATA_ROOT or ./data)."),
    device: str = typer.Option(_T.device, help="auto, cpu, cuda or cuda:N."),
    num_workers: int = typer.Option(_T.num_workers, help="DataLoader workers reading the feature cache."),
    precision: str = typer.Option(
        _T.precision,
        help="Autocast dtype: fp32, bf16, fp16 (CUDA, with loss scaling) or auto (bf16 on a GPU "
        "that has it, else fp32; bf16 on a CPU is ~10x slower). Emissions and the CRF always run in fp32.",
    ),
    recipe: str = typer.Option(
        "default",
        help="The model's settings for everything not given: default (umt's, `umt models --defaults`; the "
        "recipe table in docs/training.md says where and why they differ from the paper) or paper (what the paper's "
        "section 3.1 states for each system: batch 16 and 128 positions for all, lr 5e-5 for every "
        "parameter of the BERT systems).",
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        callback=experiment_file.file_checked(parse_overrides),
        help="Override any ModelConfig/TrainConfig field, e.g. --set esd_weight=0.3 (repeatable; added to "
        "a --config file's); head_lr, patience, grad_accum, schedule, compile: see docs/training.md.",
    ),
    resume: bool = typer.Option(
        False, help="Continue a killed run from its last completed epoch, with the settings it was started with."
    ),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
    log_to: str = typer.Option("", help=_LOG_TO_HELP),
    tracking_uri: str | None = typer.Option(None, help=_TRACKING_URI_HELP),
    config: Path | None = experiment_file.config_option(),
) -> None:
    """Train a model; select on dev F1, score test once, write a self-contained run directory.

    On several GPUs or machines, start it with torchrun (docs/training.md, "Scaling out"):
    torchrun --nproc-per-node 4 -m umt.cli train ... (--batch-size stays the posts per step).
    """
    from umt.stages import train

    if resume and _given(ctx, "recipe"):
        raise ConfigError(
            "--recipe chooses a new run's settings; a resumed run keeps the settings it was started with: drop --recipe"
        )
    seed_list = parse_seeds(seeds) if seeds else (seed,)
    flags = {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "device": device, "num_workers": num_workers,
        "precision": precision,
    }  # fmt: skip
    model_cfg, train_cfg, explicit = _configs(ctx, encoder, word_vectors, set_, flags, seed_list[0])
    train.run(
        requests.TrainRequest(
            dataset=dataset,
            model=model,
            data_root=_data_root(data_root),
            model_cfg=model_cfg,
            train_cfg=train_cfg,
            seeds=seed_list,
            out=out,
            features=features,
            backbone=backbone,
            no_images=no_images,
            resume=resume,
            overwrite=overwrite,
            explicit=explicit,
            settings=recipe,
            log_to=parse_log_to(log_to),
            tracking_uri=tracking_uri,
        )
    )


@_command(app, "sweep")
def sweep_cmd(
    ctx: typer.Context,
    dataset: str = typer.Option("twitter2017", help="Dataset folder under the data root."),
    model: str = typer.Option("umt", help="Registered model name; `umt models` lists them."),
    grid: str = typer.Option(
        "",
        help="Every combination is one trial: space-separated setting=values, e.g. "
        '"lr=1e-5,1e-4 dropout=0.1,0.5 esd_weight=0.1,0.9" (the paper\'s section 3.1 grid).',
        show_default=False,
    ),
    space: str = typer.Option(
        "",
        help="A TPE search with --trials: setting=low:high (a range; :log for a log scale; whole numbers for an "
        'integer setting) or setting=a,b,c (a choice), e.g. "lr=1e-5:1e-4:log epochs=2:8 dropout=0.1,0.3".',
        show_default=False,
    ),
    trials: int | None = typer.Option(None, help="Trials of a --space search.", show_default=False),
    encoder: str = typer.Option("bert-base-cased", help="Hugging Face encoder name or local folder (BERT models)."),
    word_vectors: str = typer.Option("", help="Word vectors of the BiLSTM models (as for `umt train`)."),
    features: Path | None = typer.Option(None, help="Image-feature cache (default: the one for --dataset)."),
    no_images: bool = typer.Option(False, "--no-images", help="Train a multimodal model with every image absent."),
    data_root: Path | None = typer.Option(None, help="Data root (default: $UMT_DATA_ROOT or ./data)."),
    seed: int = typer.Option(_T.seed, help="The one seed every trial trains with (selection is on dev F1)."),
    recipe: str = typer.Option(
        "default", help="The model's settings for everything not searched or set: default or paper."
    ),
    set_: list[str] = typer.Option(
        [],
        "--set",
        callback=experiment_file.file_checked(parse_overrides),
        help="A setting every trial shares, e.g. --set epochs=5 (repeatable).",
    ),
    device: str = typer.Option(_T.device, help="auto, cpu, cuda or cuda:N."),
    out: Path | None = typer.Option(None, help="Sweep folder (default: runs/<dataset>/<model>/sweep)."),
    storage: str | None = typer.Option(
        None,
        help="Optuna storage URL that several workers share, e.g. postgresql://host/db (default: SQLite in the "
        "sweep folder). Start the same command on each machine: they share the trials.",
        show_default=False,
    ),
    study: str | None = typer.Option(None, help="Study name in the storage (default: <dataset>/<model>/<folder>)."),
    prune: bool = typer.Option(True, help="Stop a trial early when its dev F1 after an epoch is below the median."),
    heartbeat: float = typer.Option(
        requests.DEFAULT_HEARTBEAT,
        help="Seconds between a worker's heartbeats; a trial silent for twice this is retried.",
    ),
    best: bool = typer.Option(False, "--best", help="Print the best trial and the `umt train` command that trains it."),
    config: Path | None = experiment_file.config_option(),
) -> None:
    """Search hyper-parameters on dev F1: a grid or a TPE search on Optuna, one run directory per
    trial, pruning, resumable (run the same command again), shared by several workers.

    Writes trials.md, best.json (with the best trial's `umt train` command), history.png and importance.png into
    the sweep folder (docs/training.md, "Sweeps").
    """
    from umt.stages import sweep

    model_cfg, train_cfg, explicit = _configs(ctx, encoder, word_vectors, set_, {"device": device}, seed)
    base = requests.TrainRequest(
        dataset=dataset,
        model=model,
        data_root=_data_root(data_root),
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        features=features,
        no_images=no_images,
        explicit=explicit,
        settings=recipe,
    )
    sweep.run(
        requests.SweepRequest(
            base,
            grid=grid,
            space=space,
            trials=trials,
            out=out,
            storage=storage,
            study=study,
            prune=prune,
            heartbeat=heartbeat,
            best=best,
        )  # fmt: skip
    )


@_command(app, "eval")
def eval_cmd(
    run: str = typer.Argument(..., help=_SOURCE_HELP),
    split: str = typer.Option("test", help="Split of the run's dataset: test, valid or train."),
    data: Path | None = typer.Option(None, help="Score this labelled file (Twitter format or JSONL) instead."),
    data_root: Path | None = typer.Option(None, help="Data root (default: the one the run was trained from)."),
    features: Path | None = typer.Option(None, help="Image-feature cache (default: the run's)."),
    out: Path | None = typer.Option(
        None, help="Metrics JSON path (default: RUN/eval_<split>.json; for a hub id, ./eval_<split>.json)."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    quantize: str = typer.Option("none", help=_QUANTIZE_HELP),
) -> None:
    """Score a run's best checkpoint: entity-level P/R/F1 overall and per type (both schemes)."""
    from umt.stages import evaluate

    evaluate.run(
        requests.EvalRequest(
            run=run,
            split=split,
            data=data,
            data_root=data_root,
            features=features,
            out=out,
            device=device,
            quantize=quantize,
        )
    )


@_command(app, "predict")
def predict_cmd(
    run: str = typer.Argument(..., help=_SOURCE_HELP),
    input: Path | None = typer.Option(
        None,
        "--input",
        "-i",
        show_default=False,
        help='Posts to tag (default: stdin): JSON lines {"text": ..., "image": ...} or {"tokens": [...]}, '
        "a CSV file with a 'text' column (and optionally 'image', 'id'), or a folder of images each with "
        "its text in a .txt file of the same name.",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        show_default=False,
        help="JSON-lines file to write (default: stdout): per post its tokens, BIO tags and entities "
        "(entity_group, word, start, end, score).",
    ),
    images: Path | None = typer.Option(
        None, help="Folder the posts' image ids or relative paths are found in (also tried: the input's folder)."
    ),
    format: str | None = typer.Option(
        None, help="jsonl, csv or folder (default: from the input: a folder, a .csv file, else jsonl)."
    ),
    tokenizer: str | None = typer.Option(
        None,
        help="How raw text is split: tweet (@mentions and #hashtags whole) or tweet-split ('#' 'tag'); "
        "default: the style of the run's training data.",
    ),
    features: Path | None = typer.Option(
        None,
        help="Take the images from this feature cache (the posts' 'image' are its ids) instead of "
        "computing them; its settings must match the run's.",
    ),
    weights: str | None = typer.Option(
        None, help="ResNet-152 weights file, when the run's features were computed from one (checked by sha256)."
    ),
    image_cache: Path | None = typer.Option(
        None,
        help="Where computed image grids are kept by content hash "
        "(default: $UMT_CACHE_DIR/predict-features or ~/.cache/umt/predict-features).",
    ),
    explain: Path | None = typer.Option(
        None,
        help="Write one PNG per entity of each post with an image into this folder: the image with the "
        "entity's attention over the 7x7 grid laid over it.",
    ),
    strict: bool = typer.Option(False, help="Stop at the first bad line instead of reporting and skipping it."),
    batch_size: int | None = typer.Option(None, help="Posts per forward pass (default: the run's eval batch size)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    any_image_path: bool = typer.Option(
        False,
        "--any-image-path",
        help="Let a post's 'image' be any path on this machine (absolute, or with ..). "
        "By default it must name a file inside --images or the input's folder.",
    ),
    max_image_mb: int = typer.Option(_P.max_image_mb, help="Refuse image files larger than this many MiB."),
    image_cache_mb: int = typer.Option(
        _P.image_cache_mb, help="Size cap of the image cache in MiB; the least recently used grids go first (0: none)."
    ),
    quantize: str = typer.Option("none", help=_QUANTIZE_HELP),
) -> None:
    """Tag new posts with a trained run: tokens, valid BIO tags and entities with character offsets
    and the model's probability of each entity (CRF marginals)."""
    from umt.stages import predict

    predict.run(
        requests.PredictRequest(
            run=run,
            input=input,
            output=output,
            images=images,
            format=format,
            tokenizer=tokenizer,
            features=features,
            weights=weights,
            image_cache=image_cache,
            explain=explain,
            strict=strict,
            device=device,
            batch_size=batch_size,
            any_image_path=any_image_path,
            max_image_mb=max_image_mb,
            image_cache_mb=image_cache_mb,
            quantize=quantize,
        )
    )


@_command(app, "export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run directory written by `umt train`."),
    out: Path = typer.Argument(..., help="New folder to write (the Hugging Face model-repository layout)."),
    name: str | None = typer.Option(
        None, help="The model's name in its card, e.g. the hub id you will push it as (default: OUT's name)."
    ),
    overwrite: bool = typer.Option(False, help="Replace an earlier export in OUT (nothing else is replaced)."),
) -> None:
    """Write a trained run as a shareable model folder: safetensors weights, config, text side and a
    model card (README.md). Push it with `hf upload OWNER/NAME OUT`; load it by id with umt.load,
    umt predict, umt eval or umt serve."""
    from umt.stages import export

    export.run(requests.ExportRequest(run=run, out=out, name=name, overwrite=overwrite))


@_command(app, "serve")
def serve_cmd(
    run: str = typer.Argument(..., help=_SOURCE_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (another than loopback needs --token)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    token: str | None = typer.Option(
        None, envvar="UMT_SERVE_TOKEN", help="Require 'Authorization: Bearer TOKEN' on the API (the page asks for it)."
    ),
    no_token: bool = typer.Option(False, "--no-token", help="Allow a non-loopback --host without a token."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    quantize: str = typer.Option("none", help=_QUANTIZE_HELP),
    images: Path | None = typer.Option(
        None, help="The test posts' image folder, for the page's predictions view (default: the run's dataset's)."
    ),
    image_cache: Path | None = typer.Option(None, help="Where computed image grids are kept (as for umt predict)."),
    weights: str | None = typer.Option(None, help="ResNet-152 weights file, when the run's features came from one."),
    max_posts: int = typer.Option(64, help="Most posts in one request."),
    max_image_mb: int = typer.Option(8, help="Largest uploaded image, in MiB."),
    max_pixels: int = typer.Option(40_000_000, help="Most pixels in an uploaded image."),
    max_body_mb: int = typer.Option(32, help="Largest request body, in MiB."),
    max_batch: int = typer.Option(64, help="Most posts tagged in one batch (requests arriving together share one)."),
    max_wait_ms: float = typer.Option(5.0, help="Longest a request waits for others to join its batch."),
    max_queued: int = typer.Option(4096, help="Most posts waiting; beyond, requests get 503."),
) -> None:
    """Serve a trained model: POST /v1/tag (the records umt predict writes), a page at / to tag a
    post and see its entities and image attention, and the run's test predictions to browse."""
    from umt.stages import serve

    serve.run(
        requests.ServeRequest(
            run=run,
            host=host,
            port=port,
            token=token or None,
            no_token=no_token,
            device=device,
            quantize=quantize,
            images=images,
            image_cache=image_cache,
            weights=weights,
            max_posts=max_posts,
            max_image_mb=max_image_mb,
            max_pixels=max_pixels,
            max_body_mb=max_body_mb,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_queued=max_queued,
        )
    )


@_command(app, "report")
def report_cmd(
    runs: Path = typer.Option(
        _R.runs,
        help="Folder searched (recursively) for run directories: folders holding config.json, "
        "metrics.json or last.pt, e.g. runs/<dataset>/<model>/seed<N>.",
    ),
    ablations: bool = typer.Option(
        False,
        "--ablations",
        help="Show Table 3 instead of Table 2: the full umt and its ablations (umt-no-esd, "
        "umt-no-conversion, umt-no-image-aware-wr, umt-no-visual-gate), P/R/F1 and ΔF1 against umt, each "
        "ablation tested against umt.",
    ),
    paper: bool = typer.Option(
        False,
        "--paper",
        help="Quote the paper's own numbers (Yu et al. 2020, Table 2 or 3) in a row under each "
        "system, marked 'paper:'.",
    ),
    figures: bool = typer.Option(
        False,
        "--figures",
        help="Also draw PNGs into OUT/figures (needs --out and matplotlib): entities fixed / "
        "broken against bert-crf by type (the paper's Figures 3 and 4), F1 by type with seed error bars, "
        "learning curves.",
    ),
    out: Path | None = typer.Option(
        None,
        help="Folder to write the report into: table2.md / table2.csv / table2.tex (table3.* with "
        "--ablations). Default: print only.",
        show_default=False,
    ),
    format: str | None = typer.Option(
        None,
        "--format",
        help="Comma-separated files to write with --out: md (tables, notes, significance, "
        "case study, runs not counted), csv (one row per system and dataset, in %), tex (booktabs tabular). "
        "Default with --out: md,csv,tex.",
        show_default=False,
    ),
    cases: int = typer.Option(
        _R.cases,
        help="Case-study posts per dataset (0: none): test posts where the systems disagree, with gold "
        "and predicted entities (seed 1).",
    ),
    resamples: int = typer.Option(
        _R.resamples,
        help="Swap patterns R of each paired approximate-randomisation test (p = (hits + 1) / (R + 1)).",
    ),
    pick: str = typer.Option(
        _R.pick,
        help="Which configuration a row counts when a system's runs on a dataset differ in settings (every "
        "config.json setting but the seed), and which run a seed counts when two have the same settings: "
        "dev (best mean dev F1; never test), latest (trained last) or first (found first).",
    ),
    where: list[str] = typer.Option(
        [],
        help="Count only configurations trained with this setting=value, e.g. lr=5e-5, and only the rows "
        "whose images went through backbone=NAME, e.g. backbone=resnet152 (text-only rows stay); repeat for "
        "more: all must hold.",
        show_default=False,
    ),
) -> None:
    """The paper's Table 2 (or Table 3) from finished runs: test P/R/F1 and F1 per entity type, mean ± std
    over seeds, significance against bert-crf (or umt), a case study, and the runs that are unfinished,
    damaged or missing. Runs of one system that differ in settings are configurations, one per row is
    chosen (--pick, --where) and named in a footnote. Loads no model."""
    from umt.stages import report

    formats = tuple(part.strip() for part in format.split(",") if part.strip()) if format is not None else None
    report.run(
        requests.ReportRequest(
            runs=runs,
            ablations=ablations,
            paper=paper,
            figures=figures,
            out=out,
            formats=formats,
            cases=cases,
            resamples=resamples,
            pick=pick,
            where=tuple(where),
        )
    )


@_command(app, "reproduce")
def reproduce_cmd(
    dataset: str = typer.Option("twitter2017", help="Dataset folder under the data root."),
    seeds: str = typer.Option(
        "1,2,3",
        callback=experiment_file.file_checked(parse_seeds),
        help="Comma-separated seeds: one run of every system per seed.",
    ),
    systems: str = typer.Option(
        "table2",
        help="table2 (the eleven systems of Table 2), table3 (UMT and its four ablations), all, "
        "or comma-separated model names.",
    ),
    encoder: str = typer.Option("bert-base-cased", help="Hugging Face encoder name or local folder (BERT systems)."),
    word_vectors: str = typer.Option(
        "", help="Word vectors for the BiLSTM systems (as `umt train --word-vectors`); required when they are planned."
    ),
    features: Path | None = typer.Option(
        None, help="Image-feature cache (default: the dataset's; extracted first when it is missing)."
    ),
    backbone: str = typer.Option(
        requests.DEFAULT_BACKBONE,
        help="Image backbone of every text+image system: its default cache, extracted first when missing; "
        "runs of another backbone than resnet152 go to RUNS/<dataset>/<model>_<backbone>/.",
    ),
    weights: str | None = typer.Option(
        None,
        help="Weights for an extraction this command runs (as `umt extract-images --weights`).",
        show_default=False,
    ),
    no_images: bool = typer.Option(False, "--no-images", help="Train the multimodal systems with every image absent."),
    recipe: str = typer.Option(
        "paper",
        help="Settings of every system: paper (section 3.1; the recipe table in docs/training.md) or default (umt's).",
    ),
    epochs: int = typer.Option(0, help="Epochs for every system instead of the paper's (0: the paper's)."),
    batch_size: int = typer.Option(0, help="Batch size for every system instead of the paper's (0: the paper's)."),
    lr: float = typer.Option(0.0, help="Learning rate for every system instead of the paper's (0: the paper's)."),
    runs: Path = typer.Option(Path("runs"), help="Runs root: runs go to RUNS/<dataset>/<model>/seed<N>."),
    data_root: Path | None = typer.Option(None, help="Data root (default: $UMT_DATA_ROOT or ./data)."),
    device: str = typer.Option(_T.device, help="auto, cpu, cuda or cuda:N."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan (systems, settings, finished runs) and stop."),
    log_to: str = typer.Option("", help=_LOG_TO_HELP),
    tracking_uri: str | None = typer.Option(None, help=_TRACKING_URI_HELP),
    config: Path | None = experiment_file.config_option(),
) -> None:
    """Reproduce the paper's tables: extract the images if needed, train every system and seed with the
    paper's settings (finished runs are skipped, killed ones resume), write the report. Stop and rerun
    the same command at any point."""
    from umt.pipeline.text.vectors import vectors_source
    from umt.stages import reproduce

    overrides = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)) if v}
    reproduce.run(
        requests.ReproduceRequest(
            dataset=dataset,
            data_root=_data_root(data_root),
            seeds=parse_seeds(seeds),
            systems=systems,
            encoder=encoder,
            word_vectors=vectors_source(word_vectors),
            features=features,
            no_images=no_images,
            backbone=backbone,
            weights=weights,
            runs=runs,
            device=device,
            train_overrides=overrides,
            settings=recipe,
            dry_run=dry_run,
            log_to=parse_log_to(log_to),
            tracking_uri=tracking_uri,
        )
    )


@_command(app, "demo")
def demo_cmd(
    out: Path = typer.Option(_D.out, help="Working folder for the sample, the cache and the runs."),
    seed: int = typer.Option(_D.seed, help="Seed for the sample, the encoder and training."),
    epochs: int = typer.Option(_D.epochs, help="Training epochs per model."),
    fresh: bool = typer.Option(False, help="Retrain every model even if a finished run is in --out."),
) -> None:
    """Offline end-to-end demo: synthetic posts + images -> extract-images -> bert-crf, mt, umt -> table."""
    from umt.stages import demo

    demo.run(requests.DemoRequest(out=out, seed=seed, epochs=epochs, fresh=fresh))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one red line and exit status 2; Ctrl-C exits 130.

    Usage errors (an unknown option, a missing argument) are click's: its message, status 2.
    """
    try:
        app(args=argv)
    except USER_ERRORS as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))


if __name__ == "__main__":
    main()
