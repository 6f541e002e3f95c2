"""``umt train``: train one model (or one per seed) from the text and the image-feature cache.

The model's recipe first fills every setting the user did not give with its settings
(``--recipe default``, umt's, or ``paper``, section 3.1's: ``TrainRequest.configs``).
Everything a user can get wrong is checked before torch loads (a second or so): the model
name, the data files, the feature cache's path, the recipe's text inputs (the encoder folder,
or the word vectors), the run folders (created, or refused when they hold a run that --resume
or --overwrite should decide about) and, with --resume, that the options given agree with the
run's own. Then, per run: the recipe's text side
cuts the posts into windows, and :func:`umt.pipeline.training.run.train_run` writes the run
directory, trains with dev selection, scores the test split once with the best checkpoint and
finishes the run.

Under torchrun every process runs this same function (``umt.pipeline.runtime.distributed``): the main process
claims and writes the run directories and prints; the others follow it, and share the training
steps and the evaluations.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from umt.pipeline.data.features import features_path, open_features
from umt.pipeline.data.layout import load_dataset, require_labels
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.labels import LabelVocab
from umt.pipeline.metrics import PRIMARY, pct
from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.registry import Recipe
from umt.pipeline.run_dir import FORMAT_VERSION, RunConfig, RunDir, write_json
from umt.pipeline.runtime.distributed import World, current_world, joined
from umt.pipeline.text.tweets import detect_style
from umt.pipeline.tracking import Destination, trackers
from umt.pipeline.train_config import RUNTIME_FIELDS, TrainConfig
from umt.pipeline.training.observers import Observers, TrainingObserver
from umt.stages.requests import TrainRequest
from umt.stages.tables import metrics_table

#: A multimodal run where fewer training posts than this share have an image is warned about.
MIN_IMAGE_SHARE = 0.5


def _resumed_configs(run: RunDir, req: TrainRequest, recipe: Recipe, seed: int) -> tuple[ModelConfig, TrainConfig]:
    """The settings a run was started with; an option given now that differs from them is refused."""
    stored = run.config()
    if stored.version != FORMAT_VERSION:
        raise ConfigError(
            f"{run.path} was written by an older umt (run format {stored.version}); --resume continues runs of "
            f"format {FORMAT_VERSION} only: finish it with the umt that started it, or start again with --overwrite"
        )
    problems = []
    if stored.model != req.model or stored.dataset != req.dataset:
        problems.append(f"it trains {stored.model} on {stored.dataset}, not {req.model} on {req.dataset}")
    if stored.no_images != (req.no_images and recipe.multimodal):
        problems.append(f"it was started {'with' if stored.no_images else 'without'} --no-images")
    if stored.train_cfg.seed != seed:
        problems.append(f"seed: the run has {stored.train_cfg.seed}, asked {seed}")
    for name in sorted(req.explicit - set(RUNTIME_FIELDS) - {"seed"}):
        for asked, kept in ((req.model_cfg, stored.model_cfg), (req.train_cfg, stored.train_cfg)):
            if hasattr(asked, name) and getattr(asked, name) != getattr(kept, name):
                problems.append(f"{name}: the run has {getattr(kept, name)!r}, asked {getattr(asked, name)!r}")
    if problems:
        raise ConfigError(
            f"{run.path}: --resume continues a run with the settings it was started with; "
            + "; ".join(problems)
            + ". Drop those options, or use --overwrite to start the run again"
        )
    runtime = {name: getattr(req.train_cfg, name) for name in RUNTIME_FIELDS}
    return stored.model_cfg, replace(stored.train_cfg, **runtime)


def _check_inputs(req: TrainRequest, recipe: Recipe) -> tuple[dict[str, list[Post]], LabelVocab]:
    """The data, label vocabulary and paths, checked without loading torch."""
    splits = load_dataset(req.data_root, req.dataset)
    for posts in splits.values():
        require_labels(posts, "`umt train` (every split)")
    if recipe.multimodal and not req.no_images:
        features_path(req.features, req.data_root, req.dataset, req.backbone)
    if not req.resume:  # a resumed run is checked with its own settings, once they are read
        recipe.check_inputs(req.model_cfg)
    vocab = LabelVocab.from_sequences(p.labels for posts in splits.values() for p in posts)
    return splits, vocab


@dataclass(frozen=True)
class _Hooks:
    """What a caller in Python adds to each run: a test's early stop, a sweep's observers."""

    stop_after_epoch: Callable[[int], bool] | None = None
    observe: Callable[[RunDir], list[TrainingObserver]] | None = None


class _Session:
    """What the runs of one request share: data, features and, per settings, text side and datasets."""

    def __init__(self, req: TrainRequest, recipe: Recipe, splits, vocab: LabelVocab, console: Console, world: World):
        self.req, self.recipe, self.splits, self.vocab, self.console = req, recipe, splits, vocab, console
        self.world = world
        self.features, self.cache = None, None
        if recipe.multimodal and not req.no_images:
            self.features, self.cache = open_features(req.features, req.data_root, req.dataset, req.backbone)
        elif req.features is not None and not recipe.multimodal:
            console.print(f"[yellow]note:[/] {escape(req.model)} is text-only; --features is ignored")
        self._prepared: dict[Any, tuple] = {}

    def prepare(self, model_cfg: ModelConfig, train_cfg: TrainConfig):
        """(text side, {split: dataset}, visual stats) for these settings, built once."""
        key = (model_cfg, train_cfg.standardize_visual)
        if key not in self._prepared:
            self._prepared[key] = self._build(model_cfg, train_cfg)
        return self._prepared[key]

    def _build(self, model_cfg: ModelConfig, train_cfg: TrainConfig):
        from umt.pipeline.data.batching import MnerDataset
        from umt.pipeline.data.visual_stats import StandardizedFeatures, compute_stats

        features, stats = self.features, None
        if features is not None and train_cfg.standardize_visual:
            stats = compute_stats(features, (p.image for p in self.splits["train"] if p.image is not None))
            if stats is None:
                raise ConfigError(
                    f"--set standardize_visual=true: no training image of {self.req.dataset} has features"
                )
            features = StandardizedFeatures(features, stats)
        text = self.recipe.text_side().create(model_cfg, self.splits["train"])
        data = {
            split: MnerDataset(posts, text, self.vocab, features, name=f"{self.req.dataset}/{split}")
            for split, posts in self.splits.items()
        }
        if features is not None:
            self._check_coverage(data["train"])
        return text, data, stats

    def _check_coverage(self, train) -> None:
        present, total = train.image_coverage()
        cache = self.cache["path"]
        if present == 0:
            raise ConfigError(
                f"none of the {total} training posts has image features in {cache}: check the posts' image "
                "ids (the JSONL key is 'image'; `umt cache info` lists the cache), or train with --no-images"
            )
        share = present / total
        message = f"{present} of {total} training posts ({100 * share:.1f}%) have image features"
        if share < MIN_IMAGE_SHARE:
            self.console.print(f"[bold yellow]warning:[/] only {message}; the others train with the 'no image' grid")
        else:
            self.console.print(message)


def run(
    req: TrainRequest,
    console: Console | None = None,
    stop_after_epoch: Callable[[int], bool] | None = None,
    observe: Callable[[RunDir], list[TrainingObserver]] | None = None,
) -> list[dict]:
    """Train every requested seed; returns one ``metrics.json`` dict per finished run.

    ``observe(run)`` gives the observers of each run that trains (``umt sweep``'s pruner), beside
    the trackers ``req.log_to`` asks for; a run that was finished already is not observed.
    """
    world = current_world()
    console = console or Console()
    if not world.main:
        console = Console(quiet=True)
    recipe = get_recipe(req.model)
    model_cfg, train_cfg = req.configs()
    req = replace(req, model_cfg=model_cfg, train_cfg=train_cfg)
    splits, vocab = _check_inputs(req, recipe)
    with joined(world, world.device(train_cfg.device)):
        return _run(req, recipe, splits, vocab, console, world, _Hooks(stop_after_epoch, observe))


def _run(
    req: TrainRequest, recipe: Recipe, splits, vocab: LabelVocab, console: Console, world: World, hooks: _Hooks
) -> list[dict]:
    with contextlib.ExitStack() as claims:  # each run folder is held (locked) until its run is done
        runs = []
        for seed in req.seeds:
            run_dir = RunDir(req.run_dir(seed))
            claim = run_dir.claimed(resume=req.resume, overwrite=req.overwrite)
            state = world.on_main(lambda claim=claim: claims.enter_context(claim))
            if state == "resume":
                model_cfg, train_cfg = _resumed_configs(run_dir, req, recipe, seed)
            else:
                model_cfg, train_cfg = req.model_cfg, replace(req.train_cfg, seed=seed)
            if req.resume and state != "finished":
                recipe.check_inputs(model_cfg)
            runs.append((seed, run_dir, state, model_cfg, train_cfg))

        session = _Session(req, recipe, splits, vocab, console, world)
        results = []
        for _, run_dir, state, model_cfg, train_cfg in runs:
            if state == "finished":
                console.print(
                    f"{escape(str(run_dir.path))} is finished already; skipping (remove it or use --overwrite to "
                    "retrain)",
                    highlight=False,
                )
                results.append(run_dir.metrics())
                continue
            metrics = _train_one(session, run_dir, state == "resume", model_cfg, train_cfg, hooks)
            if metrics is not None:
                results.append(metrics)
    if len(results) > 1 and world.main:
        _summarise(results, req, console)
    return results


def _train_one(session: _Session, run: RunDir, resuming: bool, model_cfg, train_cfg, hooks: _Hooks):
    from umt.pipeline.runtime.devices import resolve_device
    from umt.pipeline.training.run import train_run

    req, console, splits, world = session.req, session.console, session.splits, session.world
    model_cfg = _fit_to_features(model_cfg, session, run if resuming else None)
    text, data, stats = session.prepare(model_cfg, train_cfg)
    device = resolve_device(world.device(train_cfg.device))
    console.print(
        f"[bold]{escape(req.model)}[/] "
        + escape(
            f"on {req.dataset} (seed {train_cfg.seed}): {len(splits['train'])} train / "
            f"{len(splits['valid'])} dev / {len(splits['test'])} test posts, {len(session.vocab)} labels, "
            f"text {_describe(text)}, device {device}, "
            + (f"images from {session.cache['path']}" if session.cache else "no images")
            + (f", {world.size} processes" if world.distributed else "")
        )
    )
    config = RunConfig(
        model=req.model,
        dataset=req.dataset,
        data_root=str(req.data_root.resolve()),
        model_cfg=model_cfg,
        train_cfg=train_cfg,
        text=text.describe(),
        cache=session.cache,
        no_images=bool(session.recipe.multimodal and req.no_images),
        token_style=detect_style(w for post in splits["train"] for w in post.tokens),
    )
    metrics = train_run(
        run,
        config,
        session.recipe,
        session.vocab,
        text,
        data,
        console=console,
        world=world,
        stats=stats,
        resume=resuming,
        stop_after_epoch=hooks.stop_after_epoch,
        observers=Observers(_observers(req, run, hooks, world)),
    )
    if metrics is None:
        console.print(f"stopped early; continue with --resume ({escape(str(run.path))})")
        return None
    title = f"{req.model} seed {train_cfg.seed}: test (best dev epoch {metrics['best_epoch']})"
    console.print(metrics_table(metrics["test"], title))
    console.print(f"run directory: {escape(str(run.path))}")
    return metrics


def _fit_to_features(model_cfg: ModelConfig, session: _Session, resumed: RunDir | None) -> ModelConfig:
    """``model_cfg`` with the grid shape of the cache the run reads (its backbone's: ResNet-152's
    7 x 7 x 2048, ViT-B/16's 14 x 14 x 768, ...). A resumed run keeps the shape it was built with,
    so a cache of another shape is refused, as is a ``--set visual_dim``/``grid`` that contradicts it."""
    if session.features is None:
        return model_cfg
    shape = session.features.shape
    fitted = {"visual_dim": shape.channels, "grid": shape.blocks}
    for name, value in fitted.items():
        kept = getattr(model_cfg, name)
        if kept != value and (resumed is not None or name in session.req.explicit):
            origin = f"{resumed.path} was built for" if resumed is not None else f"--set {name}={kept} asks for"
            raise ConfigError(
                f"{origin} {name}={kept}, but {session.cache['path']} holds {shape} grids of "
                f"{session.cache['manifest'].get('backbone')}: use a cache of the run's backbone"
            )
    return replace(model_cfg, **fitted)


def _observers(req: TrainRequest, run: RunDir, hooks: _Hooks, world: World) -> list[TrainingObserver]:
    """The run's trackers (``--log-to``: the main process's only), then the caller's observers."""
    tracked = trackers(req.log_to, Destination(run.path, req.tracking_uri)) if world.main else []
    return [*tracked, *(hooks.observe(run) if hooks.observe else [])]


def _describe(text) -> str:
    return ", ".join(f"{k} {v}" for k, v in text.describe().items() if k != "kind") or text.kind


def _summarise(results: list[dict], req: TrainRequest, console: Console) -> None:
    rows = {}
    for split in ("valid", "test"):
        for key in ("precision", "recall", "f1"):
            values = [m[split][PRIMARY][key] for m in results]
            rows[f"{split}_{key}"] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "values": values,
            }
    write_json(req.seeds_dir / "summary.json", {"seeds": [m["seed"] for m in results], **rows})
    title = escape(f"{req.model} on {req.dataset}: {len(results)} seeds (mean ± std)")
    table = Table(title=title, title_justify="left")
    for column in ("split", "P", "R", "F1"):
        table.add_column(column, justify="right")
    for split in ("valid", "test"):
        table.add_row(
            split,
            *(
                f"{pct(rows[f'{split}_{k}']['mean'])} ± {pct(rows[f'{split}_{k}']['std'])}"
                for k in ("precision", "recall", "f1")
            ),
        )
    console.print(table)
