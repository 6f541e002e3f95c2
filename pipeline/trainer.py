"""The fit/evaluate loop. It knows one thing about a model: ``loss = model(batch)`` for
training and ``model.decode(batch)`` (via :mod:`pipeline.predict`) for evaluation.

Model selection uses the dev split only (entity-level micro F1, seqeval default scheme); the
caller scores the test split once, with the selected checkpoint.

Resume: after every completed epoch the full training state (model, optimiser, schedule,
RNG states, best score so far) is written atomically to ``last.pt``. The shuffling order of
epoch ``e`` comes from a generator seeded with ``(seed, e)`` and the global RNG (dropout) is
restored from the checkpoint, so a run killed after epoch ``k`` and resumed reproduces the
uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch.utils.data import DataLoader

from umt.pipeline.data.batching import Collator, MnerDataset
from umt.pipeline.devices import resolve_device
from umt.pipeline.errors import ConfigError, UmtError
from umt.pipeline.labels import LabelVocab
from umt.pipeline.metrics import PRIMARY, score
from umt.pipeline.predict import predict_posts
from umt.pipeline.run_dir import RunDir
from umt.pipeline.tables import pct
from umt.pipeline.tagging import Tagged, tag_batches
from umt.pipeline.text.base import TextSide
from umt.pipeline.train_config import TrainConfig

#: Seeds the per-epoch shuffling generator together with the run seed.
_EPOCH_SEED_STRIDE = 1_000_003
#: Parameters kept out of weight decay besides biases: LayerNorm gains, and the conversion
#: matrix W^c, whose label-correspondence prior decay would pull toward zero.
_NO_DECAY = ("norm", "conversion")
#: Without a terminal (batch jobs, nohup) the live bars are invisible: print a line this often.
_PLAIN_PROGRESS_SECONDS = 30.0


class TrainingInterrupted(UmtError):
    """Ctrl-C during training: the run keeps its last completed epoch and can be resumed."""

    exit_code = 130


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def make_loader(dataset: MnerDataset, collate: Collator, batch_size: int, num_workers: int, order=None):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,
        shuffle=False,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class Predictor:
    """A model with what it takes to tag whole datasets: its text side, labels and settings."""

    model: torch.nn.Module
    text: TextSide
    vocab: LabelVocab
    cfg: TrainConfig
    device: torch.device

    def batches(self, dataset: MnerDataset):
        """``dataset``'s windows in evaluation batches."""
        collate = Collator(self.text, with_images=dataset.features is not None)
        return make_loader(dataset, collate, self.cfg.eval_batch_size, self.cfg.num_workers)

    def predict(self, dataset: MnerDataset) -> list[list[str]]:
        """The predicted tags of every post of ``dataset`` (one per word)."""
        lengths = [len(p) for p in dataset.posts]
        with _autocast(self.device, self.cfg.amp):
            return predict_posts(self.model, self.batches(dataset), len(lengths), lengths, self.vocab, self.device)

    def tag(self, dataset: MnerDataset, texts, offsets, explain: bool = False) -> list[Tagged]:
        """Valid tags and entity dicts (``pipeline.tagging``) of every post of ``dataset``, whose
        texts and token offsets are ``texts`` and ``offsets``."""
        posts = dataset.posts
        with _autocast(self.device, self.cfg.amp):
            return tag_batches(
                self.model, self.batches(dataset), [len(p) for p in posts], texts, offsets, [p.tokens for p in posts],
                self.vocab, self.device, explain=explain,
            )

    def evaluate(self, dataset: MnerDataset) -> tuple[dict, list[list[str]]]:
        """Scores (both schemes) and the predicted tags of every post of ``dataset``."""
        preds = self.predict(dataset)
        return score([p.labels for p in dataset.posts], preds), preds


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, steps_per_epoch: int):
    """The optimiser (AdamW or SGD with momentum) and its per-step learning-rate schedule.

    ``linear``: warm-up over ``warmup`` of all steps, then linear decay to 0 (the BERT recipe).
    ``inverse``: lr / (1 + lr_decay * epoch), constant within an epoch (Ma and Hovy, 2016).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or any(key in name.lower() for key in _NO_DECAY)
        (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = max(1, int(cfg.warmup * total_steps))

    def linear(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    def inverse(step: int) -> float:
        return 1.0 / (1.0 + cfg.lr_decay * (step // steps_per_epoch))

    factor = inverse if cfg.schedule == "inverse" else linear
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def fit(
    model: torch.nn.Module,
    train: MnerDataset,
    dev: MnerDataset,
    text: TextSide,
    vocab: LabelVocab,
    cfg: TrainConfig,
    run: RunDir,
    *,
    resume: bool = False,
    console: Console | None = None,
    stop_after_epoch: Callable[[int], bool] | None = None,
) -> dict:
    """Train, keeping the best dev checkpoint in ``run/best.pt``; returns a summary dict.

    ``stop_after_epoch(epoch)`` returning True ends training after that epoch as if the
    process had been killed there (tests use it to check that resuming is exact). Ctrl-C
    raises :class:`TrainingInterrupted` naming the last completed epoch.
    """
    loop = _Loop(model, train, dev, text, vocab, cfg, run, console or Console())
    if resume:
        loop.restore()
    try:
        return loop.epochs(stop_after_epoch)
    except KeyboardInterrupt:
        done = run.state()["epoch"] + 1 if run.resumable else 0
        run.log({"event": "interrupted", "completed_epochs": done})
        hint = "rerun the same command with --resume to continue" if done else "nothing to resume: run it again"
        raise TrainingInterrupted(f"interrupted after epoch {done} of {cfg.epochs} ({run.path}); {hint}") from None


class _Loop:
    """One run's training state: model, optimiser, schedule, the epoch to start at, the best score."""

    def __init__(self, model, train: MnerDataset, dev: MnerDataset, text: TextSide, vocab: LabelVocab,
                 cfg: TrainConfig, run: RunDir, console: Console):
        self.model, self.train, self.dev, self.cfg, self.run, self.console = model, train, dev, cfg, run, console
        self.device = resolve_device(cfg.device)
        model.to(self.device)
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        self.optimizer, self.scheduler = _optimizer(model, cfg, steps_per_epoch)
        self.collate = Collator(text, with_images=train.features is not None)
        self.predictor = Predictor(model, text, vocab, cfg, self.device)
        self.start_epoch, self.best_f1, self.best_epoch = 0, -1.0, -1

    def restore(self) -> None:
        """Continue from ``last.pt``: weights, optimiser, schedule, RNG, best score."""
        if not self.run.resumable:
            raise ConfigError(f"{self.run.path}: nothing to resume (no {RunDir.LAST}); start the run without --resume")
        state = self.run.state()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.start_epoch, self.best_f1, self.best_epoch = state["epoch"] + 1, state["best_f1"], state["best_epoch"]
        self.run.log({"event": "resume", "epoch": self.start_epoch})
        self.console.print(
            f"resuming {self.run.path} at epoch {self.start_epoch + 1}/{self.cfg.epochs} "
            f"(best dev F1 {pct(self.best_f1)})"
        )

    def _summary(self, completed: bool) -> dict:
        return {"completed": completed, "best_epoch": self.best_epoch + 1, "best_dev_f1": self.best_f1}

    def epochs(self, stop_after_epoch: Callable[[int], bool] | None) -> dict:
        cfg = self.cfg
        with _progress(self.console) as progress:
            epochs_task = progress.add_task("epochs", total=cfg.epochs, completed=self.start_epoch, info="")
            for epoch in range(self.start_epoch, cfg.epochs):
                started = time.perf_counter()
                train_loss = self._train_epoch(epoch, progress, started)
                dev_scores, _ = self.predictor.evaluate(self.dev)
                dev_f1 = dev_scores[PRIMARY]["f1"]
                improved = dev_f1 > self.best_f1
                if improved:
                    self.best_f1, self.best_epoch = dev_f1, epoch
                    self.run.save_best(self.model.state_dict(), epoch, dev_f1)
                self._checkpoint(epoch)
                elapsed = time.perf_counter() - started
                self.run.log(
                    {
                        "event": "epoch",
                        "epoch": epoch + 1,
                        "train_loss": train_loss,
                        "dev": {k: dev_scores[PRIMARY][k] for k in ("precision", "recall", "f1")},
                        "best": improved,
                        "lr": self.scheduler.get_last_lr()[0],
                        "seconds": round(elapsed, 2),
                    }
                )
                progress.update(epochs_task, advance=1, info=f"dev F1 {pct(dev_f1)} (best {pct(self.best_f1)})")
                self.console.print(
                    f"epoch {epoch + 1}/{cfg.epochs}  loss {train_loss:.4f}  dev F1 {pct(dev_f1)}"
                    f"{'  *' if improved else ''}  ({elapsed:.1f}s)"
                )
                if stop_after_epoch is not None and stop_after_epoch(epoch):
                    return self._summary(completed=False)
        return self._summary(completed=True)

    def _train_epoch(self, epoch: int, progress: Progress, started: float) -> float:
        """One pass over the training windows in this epoch's fixed order; the mean loss per window."""
        cfg, model = self.cfg, self.model
        generator = torch.Generator().manual_seed(cfg.seed * _EPOCH_SEED_STRIDE + epoch)
        order = torch.randperm(len(self.train), generator=generator).tolist()
        loader = make_loader(self.train, self.collate, cfg.batch_size, cfg.num_workers, order)
        task = progress.add_task(f"epoch {epoch + 1}", total=len(loader), info="")
        model.train()
        total_loss, seen, last_line = 0.0, 0, started
        for step, batch in enumerate(loader, start=1):
            batch = batch.to(self.device, non_blocking=True)
            with _autocast(self.device, cfg.amp):
                loss = model(batch)
            if not torch.isfinite(loss):
                raise RuntimeError(f"epoch {epoch + 1}: the loss became {loss.item()}; lower --lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            total_loss += loss.item() * len(batch)
            seen += len(batch)
            progress.update(task, advance=1, info=f"loss {total_loss / seen:.4f}")
            if not self.console.is_terminal and time.perf_counter() - last_line >= _PLAIN_PROGRESS_SECONDS:
                last_line = time.perf_counter()
                self.console.print(
                    f"  epoch {epoch + 1} batch {step}/{len(loader)}  loss {total_loss / seen:.4f}  "
                    f"{step / (last_line - started):.2f} batches/s"
                )
        progress.remove_task(task)
        return total_loss / max(1, seen)

    def _checkpoint(self, epoch: int) -> None:
        """The full training state after ``epoch``, for an exact resume."""
        self.run.save_state(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "epoch": epoch,
                "best_f1": self.best_f1,
                "best_epoch": self.best_epoch,
            }
        )
