"""The ``umt`` command line. Parses flags into configs and calls ``stages.*``; no logic here."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # umt draws its own progress bars

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from pipeline.errors import UmtError  # noqa: E402

app = typer.Typer(
    help="umt: multimodal named entity recognition (UMT, Yu et al. 2020) from tweets + images "
    "to trained models, result tables and tags.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)
cache_app = typer.Typer(help="Inspect and merge image-feature caches.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(cache_app, name="cache")
err = Console(stderr=True)


# ---- section: data (issue 2) -------------------------------------------------------------


@data_app.command("stats")
def data_stats(
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
    from stages.data_stats import run_data_stats

    run_data_stats(dataset, data_root=data_root, images=images)


# ---- section: extract-images and cache (issue 3) -----------------------------------------
# Defaults come from the typed configs (a light module: no torch import at startup).
from stages.extract_config import DEFAULT_MAX_FAILURES as _MAX_FAILURES  # noqa: E402
from stages.extract_config import ExtractConfig as _ExtractDefaults  # noqa: E402

_X = _ExtractDefaults()


@app.command("extract-images")
def extract_images_cmd(
    dataset: str | None = typer.Option(
        None,
        help="Dataset under the data root: ids from its train/valid/test files, images from <root>/<name>_images.",
    ),
    data_root: Path | None = typer.Option(None, help="Data root (default: $UMT_DATA_ROOT or ./data)."),
    images: Path | None = typer.Option(
        None,
        help="Image folder (default with --dataset: <root>/<name>_images); alone: extract every image in it.",
    ),
    ids_from: Path | None = typer.Option(
        None, help="With --images: extract only the ids listed in FILE, one per line."
    ),
    out: Path | None = typer.Option(
        None,
        help="Cache file to write (default with --dataset: <root>/<name>_resnet152.h5; required with --images).",
    ),
    weights: str = typer.Option(
        _X.weights,
        help="ResNet-152 weights: imagenet (torchvision download), random (tests, demos) or a state_dict PATH.",
    ),
    dtype: str = typer.Option(_X.dtype, help="Storage dtype of the grids: float16 or float32."),
    device: str = typer.Option(_X.device, help="auto, cpu or cuda."),
    batch_size: int = typer.Option(_X.batch_size, help="Images per forward pass (fixed for a resumed run)."),
    num_workers: int | None = typer.Option(
        None, help="Image-decoding worker processes (default: 1 on a CPU, up to 8 on a GPU)."
    ),
    amp: bool = typer.Option(_X.amp, help="Mixed precision (float16 autocast) on CUDA; no effect on a CPU."),
    shard: str | None = typer.Option(
        None,
        help="K/N: compute only shard K of N into <out stem>.shard-K-of-N.h5; join with `umt cache merge`.",
    ),
    strict: bool = typer.Option(False, help="Exit with an error if any image is missing or unreadable."),
    overwrite: bool = typer.Option(
        False, help="Replace an existing cache or unfinished work made with other settings."
    ),
) -> None:
    """Stage one: run a frozen ResNet-152 over the images into an HDF5 cache (7x7x2048 per image).

    Resumable: after an interruption, run the same command again.
    """
    from stages.extract_config import ExtractConfig, Shard
    from stages.extract_images import run

    run(
        ExtractConfig(
            dataset=dataset, data_root=data_root, images=images, ids_from=ids_from, out=out, weights=weights,
            dtype=dtype, device=device, batch_size=batch_size, num_workers=num_workers, amp=amp,
            shard=Shard.parse(shard) if shard else None, strict=strict, overwrite=overwrite,
        )
    )


@cache_app.command("info")
def cache_info_cmd(
    file: Path = typer.Argument(..., help="Cache file written by `umt extract-images` or `umt cache merge`."),
    max_failures: int = typer.Option(_MAX_FAILURES, help="Failed images to list (0: all)."),
) -> None:
    """Show a cache's manifest, size on disk, counts by status and its failed images."""
    from stages.cache_tools import info
    from stages.extract_config import InfoConfig

    info(InfoConfig(path=file, max_failures=max_failures))


@cache_app.command("merge")
def cache_merge_cmd(
    out: Path = typer.Argument(..., help="Cache file to write."),
    shards: list[Path] = typer.Argument(..., help="All N shard files of one `extract-images --shard K/N` run."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
) -> None:
    """Join the shard files of a sharded extraction into one cache (identical to a single run)."""
    from stages.cache_tools import merge
    from stages.extract_config import MergeConfig

    merge(MergeConfig(out=out, shards=shards, overwrite=overwrite))



# ---- section: train / eval / demo (issue 4) ----------------------------------------------
# Defaults shown in --help are read from the typed configs so they cannot drift from the code.
from pipeline.train_config import TrainConfig as _TrainDefaults  # noqa: E402

_T = _TrainDefaults()


def _data_root(value: Path | None) -> Path:
    from pipeline.data.datasets import default_data_root

    return value if value is not None else default_data_root()


@app.command("models")
def models_cmd() -> None:
    """List the registered models (the names `umt train --model` accepts)."""
    from rich.table import Table

    from pipeline.models.registry import model_names, model_spec

    table = Table("name", "images", "what it is")
    for name in model_names():
        spec = model_spec(name)
        table.add_row(name, "yes" if spec.multimodal else "no", spec.help)
    Console().print(table)


@app.command("train")
def train_cmd(
    dataset: str = typer.Option("twitter2017", help="Dataset folder under the data root (train/valid/test files)."),
    model: str = typer.Option("umt", help="Registered model name; `umt models` lists them."),
    encoder: str = typer.Option("bert-base-cased", help="Hugging Face encoder name or local model folder."),
    features: Path | None = typer.Option(
        None, help="Image-feature cache from `umt extract-images` (default: the one written for --dataset)."
    ),
    no_images: bool = typer.Option(
        False, "--no-images", help="Train a multimodal model with every image absent (no cache needed)."
    ),
    epochs: int = typer.Option(_T.epochs, help="Training epochs."),
    batch_size: int = typer.Option(_T.batch_size, help="Posts (windows) per batch."),
    lr: float = typer.Option(_T.lr, help="Peak learning rate (linear warm-up, then linear decay)."),
    seed: int = typer.Option(_T.seed, help="Random seed."),
    seeds: str | None = typer.Option(None, help="Comma-separated seeds, one run each, e.g. 1,2,3 (overrides --seed)."),
    out: Path | None = typer.Option(None, help="Run directory (default: runs/<dataset>/<model>/seed<N>)."),
    data_root: Path | None = typer.Option(None, help="Data root (default: $UMT_DATA_ROOT or ./data)."),
    device: str = typer.Option(_T.device, help="auto, cpu or cuda[:N]."),
    num_workers: int = typer.Option(_T.num_workers, help="DataLoader workers reading the feature cache."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override any ModelConfig/TrainConfig field, e.g. --set esd_weight=0.3 (repeatable)."
    ),
    resume: bool = typer.Option(False, help="Continue a killed run from its last completed epoch."),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
) -> None:
    """Train a model; select on dev F1, score test once, write a self-contained run directory."""
    from pipeline.models.config import ModelConfig
    from pipeline.runs import apply_overrides
    from stages.train import TrainRequest, train

    seed_list = [int(s) for s in seeds.split(",") if s.strip()] if seeds else [seed]
    model_cfg, train_cfg = apply_overrides(
        ModelConfig(encoder=encoder),
        _TrainDefaults(
            epochs=epochs, batch_size=batch_size, lr=lr, seed=seed_list[0], device=device, num_workers=num_workers
        ),
        set_,
    )
    request = TrainRequest(
        dataset=dataset, model=model, data_root=_data_root(data_root), model_cfg=model_cfg, train_cfg=train_cfg,
        seeds=seed_list, out=out, features=features, no_images=no_images, resume=resume, overwrite=overwrite,
    )
    train(request)


@app.command("eval")
def eval_cmd(
    run: Path = typer.Argument(..., help="Run directory written by `umt train`."),
    split: str = typer.Option("test", help="Split of the run's dataset: test or valid."),
    data: Path | None = typer.Option(None, help="Score this labelled file (Twitter format or JSONL) instead."),
    data_root: Path | None = typer.Option(None, help="Data root (default: the one the run was trained from)."),
    features: Path | None = typer.Option(None, help="Image-feature cache (default: the run's)."),
    out: Path | None = typer.Option(None, help="Metrics JSON path (default: RUN/eval_<split>.json)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N]."),
) -> None:
    """Score a run's best checkpoint: entity-level P/R/F1 overall and per type (both schemes)."""
    from stages.evaluate import evaluate_run

    if split not in ("test", "valid", "train"):
        raise typer.BadParameter("expected test, valid or train", param_hint="--split")
    evaluate_run(run, split=split, data=data, data_root=data_root, features=features, out=out, device=device)


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("demo_out"), help="Working folder for the sample, the cache and the runs."),
    seed: int = typer.Option(0, help="Seed for the sample, the encoder and training."),
    epochs: int = typer.Option(12, help="Training epochs per model."),
    fresh: bool = typer.Option(False, help="Retrain every model even if a finished run is in --out."),
) -> None:
    """Offline end-to-end demo: synthetic posts + images -> extract-images -> bert-crf, mt, umt -> table."""
    from stages.demo import DemoConfig, run

    run(DemoConfig(out=out, seed=seed, epochs=epochs, fresh=fresh))


def main() -> None:
    """Console entry point: user errors become one red line and exit status 2."""
    try:
        app()
    except UmtError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
