"""``umt train``: train one model (or one per seed) from the text and the image-feature cache."""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline import rundir
from pipeline.data.datasets import load_dataset, require_labels
from pipeline.data.visual_stats import StandardizedFeatures, compute_stats
from pipeline.errors import ConfigError
from pipeline.labels import LabelVocab
from pipeline.metrics import PRIMARY
from pipeline.models.config import ModelConfig
from pipeline.models.registry import build_model, model_spec
from pipeline.runs import TextSide, save_encoder_files
from pipeline.train import evaluate, fit, resolve_device, seed_everything
from pipeline.train_config import TrainConfig
from stages.features import open_features
from stages.report_table import metrics_table


@dataclass
class TrainRequest:
    dataset: str
    model: str
    data_root: Path
    model_cfg: ModelConfig = field(default_factory=ModelConfig)
    train_cfg: TrainConfig = field(default_factory=TrainConfig)
    seeds: list[int] = field(default_factory=lambda: [1])
    out: Path | None = None
    features: Path | None = None
    no_images: bool = False
    resume: bool = False
    overwrite: bool = False


def run_dir_for(req: TrainRequest, seed: int) -> Path:
    base = req.out if req.out is not None else Path("runs") / req.dataset / req.model
    if req.out is None or len(req.seeds) > 1:
        return base / f"seed{seed}"
    return base


def _claim(run: Path, resume: bool, overwrite: bool) -> bool:
    """Prepare ``run``; False when it already holds a finished run that --resume should keep."""
    if resume:
        if (run / rundir.METRICS).is_file() and not (run / rundir.LAST).exists():
            return False
        return True
    if run.exists() and any(run.iterdir()):
        if not overwrite:
            hint = "--resume to continue it" if (run / rundir.LAST).exists() else "--overwrite to replace it"
            raise ConfigError(f"{run} already holds a run; use {hint}, or choose another --out")
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    return True


def train(req: TrainRequest, console: Console | None = None, stop_after_epoch=None) -> list[dict]:
    """Train every requested seed; returns one ``metrics.json`` dict per finished run."""
    console = console or Console()
    spec = model_spec(req.model)
    splits = load_dataset(req.data_root, req.dataset)
    for posts in splits.values():
        require_labels(posts, "`umt train` (every split)")
    vocab = LabelVocab.from_sequences(p.labels for posts in splits.values() for p in posts)
    features, features_info = None, None
    if spec.multimodal and not req.no_images:
        features, features_info = open_features(req.features, req.data_root, req.dataset)
    elif req.features is not None and not spec.multimodal:
        console.print(f"[yellow]note:[/] {req.model} is text-only; --features is ignored")
    stats = None
    if features is not None and req.train_cfg.standardize_visual:
        stats = compute_stats(features, (p.image for p in splits["train"] if p.image is not None))
        if stats is None:
            raise ConfigError(f"--set standardize_visual=true: no training image of {req.dataset} has features")
        features = StandardizedFeatures(features, stats)
    text = TextSide.build(req.model_cfg.encoder, req.train_cfg, with_images=features is not None)
    data = {s: text.dataset(posts, vocab, features, f"{req.dataset}/{s}") for s, posts in splits.items()}
    device = resolve_device(req.train_cfg.device)
    console.print(
        f"[bold]{req.model}[/] on {req.dataset}: {len(splits['train'])} train / {len(splits['valid'])} dev / "
        f"{len(splits['test'])} test posts, {len(vocab)} labels, encoder {req.model_cfg.encoder}, device {device}, "
        + (f"images from {features_info['path']}" if features_info else "no images")
    )

    results = []
    for seed in req.seeds:
        run = run_dir_for(req, seed)
        if not _claim(run, req.resume, req.overwrite):
            console.print(f"{run} is finished already; skipping (remove it or use --overwrite to retrain)")
            results.append(rundir.read_json(run / rundir.METRICS))
            continue
        train_cfg = TrainConfig(**{**req.train_cfg.to_dict(), "seed": seed})
        seed_everything(seed)
        model = build_model(req.model, req.model_cfg, vocab)
        resuming = req.resume and (run / rundir.LAST).exists()
        if not resuming:
            rundir.write_json(
                run / rundir.CONFIG,
                {
                    "model": req.model,
                    "dataset": req.dataset,
                    "data_root": str(Path(req.data_root).resolve()),
                    "model_config": getattr(model, "config", req.model_cfg).to_dict(),
                    "train": train_cfg.to_dict(),
                    "features": features_info,
                    "no_images": bool(spec.multimodal and req.no_images),
                },
            )
            rundir.write_json(run / rundir.LABELS, vocab.to_json())
            if stats is not None:
                stats.save(run / rundir.VISUAL_STATS)
            save_encoder_files(req.model_cfg.encoder, text.tokenizer, run)
            rundir.write_json(run / rundir.ENV, rundir.environment(device))
            rundir.append_log(run, {"event": "start", "seed": seed})
        started = time.perf_counter()
        summary = fit(
            model,
            data["train"],
            data["valid"],
            text.collate,
            vocab,
            train_cfg,
            run,
            resume=resuming,
            console=console,
            stop_after_epoch=stop_after_epoch,
        )
        if not summary["completed"]:
            console.print(f"stopped early; continue with --resume ({run})")
            continue
        model.load_state_dict(rundir.load_torch(run / rundir.BEST)["model"])
        dev_scores, _ = evaluate(model, data["valid"], text.collate, vocab, train_cfg, device)
        test_scores, test_pred = evaluate(model, data["test"], text.collate, vocab, train_cfg, device)
        metrics = {
            "model": req.model,
            "dataset": req.dataset,
            "seed": seed,
            "best_epoch": summary["best_epoch"],
            "train_seconds": round(time.perf_counter() - started, 1),
            "valid": dev_scores,
            "test": test_scores,
        }
        rundir.write_json(run / rundir.METRICS, metrics)
        rundir.write_conll(run / "predictions_test.conll", splits["test"], test_pred)
        (run / rundir.LAST).unlink(missing_ok=True)
        rundir.append_log(
            run, {"event": "end", "best_epoch": summary["best_epoch"], "test_f1": test_scores[PRIMARY]["f1"]}
        )
        console.print(
            metrics_table(
                test_scores, f"{req.model} seed {seed}: test (best dev epoch {summary['best_epoch']})"
            )
        )
        console.print(f"run directory: {run}")
        results.append(metrics)
    if len(results) > 1:
        _summarise(results, req, console)
    return results


def _summarise(results: list[dict], req: TrainRequest, console: Console) -> None:
    base = req.out if req.out is not None else Path("runs") / req.dataset / req.model
    rows = {}
    for split in ("valid", "test"):
        for key in ("precision", "recall", "f1"):
            values = [m[split][PRIMARY][key] for m in results]
            rows[f"{split}_{key}"] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
    rundir.write_json(base / "summary.json", {"seeds": [m["seed"] for m in results], **rows})
    table = Table(
        title=f"{req.model} on {req.dataset}: {len(results)} seeds (mean ± std)", title_justify="left"
    )
    for column in ("split", "P", "R", "F1"):
        table.add_column(column, justify="right")
    for split in ("valid", "test"):
        table.add_row(
            split,
            *(
                f"{100 * rows[f'{split}_{k}']['mean']:.2f} ± {100 * rows[f'{split}_{k}']['std']:.2f}"
                for k in ("precision", "recall", "f1")
            ),
        )
    console.print(table)
