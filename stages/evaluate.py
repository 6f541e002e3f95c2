"""``umt eval``: score a run directory's best checkpoint on a split or a labelled file."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from umt.pipeline.data.layout import load_split, read_posts, require_labels
from umt.pipeline.errors import ConfigError
from umt.pipeline.files import same_file
from umt.pipeline.run_dir import RunDir, write_json
from umt.pipeline.sharing.source import ModelSource, locate
from umt.stages.requests import EvalRequest
from umt.stages.tables import metrics_table


def _target(req: EvalRequest, source: ModelSource) -> Path:
    """Where the scores go (by default into the run's folder; here for a hub model); checked to be
    writable before the model loads."""
    name = Path(req.data).stem if req.data is not None else req.split
    home = source.path if source.hub_id is None else Path()
    target = Path(req.out) if req.out is not None else home / f"eval_{name}.json"
    folder = target.parent
    if req.data is not None and same_file(target, Path(req.data)):
        raise ConfigError(f"--out {target} is the --data file; write the scores to another file")
    if any(same_file(target, source.path / name) for name in RunDir.FILES):
        raise ConfigError(f"--out {target} is one of the run's own files; write the scores to another file")
    if target.is_dir():
        raise ConfigError(f"--out {target} is a folder; name the JSON file to write")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        why = "is not writable" if folder.is_dir() else ("is a file" if folder.exists() else "does not exist")
        raise ConfigError(f"cannot write the scores to {target}: the folder {folder} {why} (choose another --out)")
    return target


def run(req: EvalRequest, console: Console | None = None) -> dict:
    """Scores of the run on ``req.split`` of its dataset (or on the labelled file ``req.data``)."""
    console = console or Console()
    source = locate(req.run)
    run_dir = RunDir.open(source.path)
    config = run_dir.config()
    target = _target(req, source)
    if req.data is not None:
        posts, name = read_posts(req.data), str(req.data)
    else:
        if req.data_root is None and not config.data_root:
            raise ConfigError(f"{source.name} records no data root (an exported model): pass --data-root or --data")
        root = Path(req.data_root) if req.data_root is not None else Path(config.data_root)
        posts, name = load_split(root, config.dataset, req.split), f"{config.dataset}/{req.split}"
    require_labels(posts, "`umt eval`")

    from umt.pipeline.inference.trained import load_run  # torch: only once the inputs are checked

    trained = load_run(run_dir, req.device, quantize=req.quantize)
    dataset = trained.dataset(posts, trained.features(req.features), name=name)
    scores, _ = trained.predictor().evaluate(dataset)
    result = {"run": source.name, "data": name, **scores}
    write_json(target, result)
    console.print(metrics_table(scores, f"{config.model} ({Path(source.name).name}) on {name}"))
    console.print(f"metrics written to {escape(str(target))}")
    return result
