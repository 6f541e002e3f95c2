"""One training run from start to finish: the one place a run directory is written.

``train_run`` writes what the run needs to rebuild itself (config, label vocabulary, text
side, visual statistics, environment) before the first epoch, trains with dev selection
(:func:`umt.pipeline.training.loop.fit`, which keeps the best weights and the resumable state),
then reloads the best epoch's weights, scores dev and test once with them, and finishes the run
(metrics, test predictions). Under torchrun every process calls it alike; only the main process
writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import replace
from typing import TYPE_CHECKING

from rich.console import Console

from umt.pipeline.data.batching import MnerDataset
from umt.pipeline.inference.predictor import Predictor
from umt.pipeline.labels import LabelVocab
from umt.pipeline.metrics import PRIMARY
from umt.pipeline.models.registry import Recipe
from umt.pipeline.run_dir import RunConfig, RunDir
from umt.pipeline.runtime.devices import resolve_device
from umt.pipeline.runtime.distributed import World
from umt.pipeline.runtime.environment import environment
from umt.pipeline.text.base import TextSide
from umt.pipeline.training.loop import fit, seed_everything
from umt.pipeline.training.observers import Observers

if TYPE_CHECKING:
    from umt.pipeline.data.visual_stats import VisualStats


def train_run(
    run: RunDir,
    config: RunConfig,
    recipe: Recipe,
    vocab: LabelVocab,
    text: TextSide,
    data: Mapping[str, MnerDataset],
    *,
    console: Console,
    world: World,
    stats: VisualStats | None = None,
    resume: bool = False,
    stop_after_epoch: Callable[[int], bool] | None = None,
    observers: Observers | None = None,
) -> dict | None:
    """Train the run ``config`` describes on ``data`` (``train``, ``valid``, ``test``); the
    finished run's metrics, or None when ``stop_after_epoch`` ended it early (resumable).
    ``observers`` (main process only) hear the run begin, each step and epoch, and its end, and
    are closed however it ends."""
    observers = observers if observers is not None and world.main else Observers()
    with closing(observers):
        return _train(
            run, config, recipe, vocab, text, data, console, world, stats, resume, stop_after_epoch, observers
        )


def _train(run, config, recipe, vocab, text, data, console, world, stats, resume, stop_after_epoch, observers):
    train_cfg = config.train_cfg
    device = resolve_device(world.device(train_cfg.device))
    seed_everything(train_cfg.seed)
    model = recipe.build(config.model_cfg, vocab, text)
    if world.rank:  # the same initial weights everywhere; each process its own dropout masks
        seed_everything(train_cfg.seed * world.size + world.rank)
    if not resume and world.main:
        run.write_config(replace(config, model_cfg=getattr(model, "config", config.model_cfg)))
        run.save_vocab(vocab)
        run.save_text(text)
        if stats is not None:
            run.save_visual_stats(stats.state())
        run.write_env(environment(device))
        run.log({"event": "start", "seed": train_cfg.seed})
    observers.begin(str(run.path), run.read_json(RunDir.CONFIG) if world.main else {})
    started = time.perf_counter()
    summary = fit(
        model,
        data["train"],
        data["valid"],
        text,
        vocab,
        train_cfg,
        run,
        resume=resume,
        console=console,
        stop_after_epoch=stop_after_epoch,
        world=world,
        observers=observers,
    )
    if not summary["completed"]:
        return None
    model.load_state_dict(run.best_weights())
    predictor = Predictor(model, text, vocab, train_cfg, device, world)
    dev_scores, _ = predictor.evaluate(data["valid"])
    test_scores, test_pred = predictor.evaluate(data["test"])
    metrics = {
        "model": config.model,
        "dataset": config.dataset,
        "seed": train_cfg.seed,
        "best_epoch": summary["best_epoch"],
        "train_seconds": round(time.perf_counter() - started, 1),
        "valid": dev_scores,
        "test": test_scores,
    }
    if world.main:
        run.finish(metrics, data["test"].posts, test_pred)
        run.log({"event": "end", "best_epoch": summary["best_epoch"], "test_f1": test_scores[PRIMARY]["f1"]})
        observers.end(metrics)
    world.barrier()  # the run is finished on disk before any process moves on
    return metrics
