"""``umt eval``: score a run directory's best checkpoint on a split or a file."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from pipeline import rundir
from pipeline.data.datasets import load_split, read_posts, require_labels
from pipeline.runs import open_run
from pipeline.train import evaluate, resolve_device
from stages.features import open_run_features
from stages.report_table import metrics_table


def evaluate_run(
    run: Path,
    split: str = "test",
    data: Path | None = None,
    data_root: Path | None = None,
    features: Path | None = None,
    out: Path | None = None,
    device: str = "auto",
    console: Console | None = None,
) -> dict:
    """Scores of ``run`` on ``split`` of its dataset (or on the labelled file ``data``)."""
    console = console or Console()
    opened = open_run(run, resolve_device(device))
    config = opened.config
    if data is not None:
        posts, name = read_posts(data), str(data)
    else:
        root = data_root if data_root is not None else Path(config["data_root"])
        posts, name = load_split(root, config["dataset"], split), f"{config['dataset']}/{split}"
    require_labels(posts, "`umt eval`")
    cache = open_run_features(opened, features) if opened.multimodal else None
    dataset = opened.text.dataset(posts, opened.vocab, cache, name)
    scores, _ = evaluate(
        opened.model, dataset, opened.text.collate, opened.vocab, opened.train_cfg, resolve_device(device)
    )
    result = {"run": str(run), "data": name, **scores}
    target = (
        out if out is not None else Path(run) / f"eval_{Path(name).stem if data is not None else split}.json"
    )
    rundir.write_json(target, result)
    console.print(metrics_table(scores, f"{config['model']} ({Path(run).name}) on {name}"))
    console.print(f"metrics written to {target}")
    return result
