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

    def predict(self, dataset: MnerDataset) -> list[list[str]]:
        """The predicted tags of every post of ``dataset`` (one per word)."""
        collate = Collator(self.text, with_images=dataset.features is not None)
        loader = make_loader(dataset, collate, self.cfg.eval_batch_size, self.cfg.num_workers)
        lengths = [len(p) for p in dataset.posts]
        with _autocast(self.device, self.cfg.amp):
            return predict_posts(self.model, loader, len(dataset.posts), lengths, self.vocab, self.device)

    def evaluate(self, dataset: MnerDataset) -> tuple[dict, list[list[str]]]:
        """Scores (both schemes) and the predicted tags of every post of ``dataset``."""
        preds = self.predict(dataset)
        return score([p.labels for p in dataset.posts], preds), preds


def _optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or any(key in name.lower() for key in _NO_DECAY)
        (no_decay if exempt else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
    )
    warmup = max(1, int(cfg.warmup * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

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
    console = console or Console()
    device = resolve_device(cfg.device)
    model.to(device)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    optimizer, scheduler = _optimizer(model, cfg, steps_per_epoch * cfg.epochs)
    start_epoch, best_f1, best_epoch = 0, -1.0, -1
    collate = Collator(text, with_images=train.features is not None)
    if resume:
        if not run.resumable:
            raise ConfigError(f"{run.path}: nothing to resume (no {RunDir.LAST}); start the run without --resume")
        state = run.state()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        start_epoch, best_f1, best_epoch = state["epoch"] + 1, state["best_f1"], state["best_epoch"]
        run.log({"event": "resume", "epoch": start_epoch})
        console.print(f"resuming {run.path} at epoch {start_epoch + 1}/{cfg.epochs} (best dev F1 {pct(best_f1)})")

    try:
        return _epochs(model, train, dev, collate, text, vocab, cfg, run, device, optimizer, scheduler,
                       start_epoch, best_f1, best_epoch, console, stop_after_epoch)
    except KeyboardInterrupt:
        done = run.state()["epoch"] + 1 if run.resumable else 0
        run.log({"event": "interrupted", "completed_epochs": done})
        hint = "rerun the same command with --resume to continue" if done else "nothing to resume: run it again"
        raise TrainingInterrupted(f"interrupted after epoch {done} of {cfg.epochs} ({run.path}); {hint}") from None


def _epochs(model, train, dev, collate, text, vocab, cfg, run, device, optimizer, scheduler,
            start_epoch, best_f1, best_epoch, console, stop_after_epoch) -> dict:
    with _progress(console) as progress:
        epochs_task = progress.add_task("epochs", total=cfg.epochs, completed=start_epoch, info="")
        for epoch in range(start_epoch, cfg.epochs):
            started = time.perf_counter()
            generator = torch.Generator().manual_seed(cfg.seed * _EPOCH_SEED_STRIDE + epoch)
            order = torch.randperm(len(train), generator=generator).tolist()
            loader = make_loader(train, collate, cfg.batch_size, cfg.num_workers, order)
            batch_task = progress.add_task(f"epoch {epoch + 1}", total=len(loader), info="")
            model.train()
            total_loss, seen, last_line = 0.0, 0, started
            for step, batch in enumerate(loader, start=1):
                batch = batch.to(device, non_blocking=True)
                with _autocast(device, cfg.amp):
                    loss = model(batch)
                if not torch.isfinite(loss):
                    raise RuntimeError(f"epoch {epoch + 1}: the loss became {loss.item()}; lower --lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                total_loss += loss.item() * len(batch)
                seen += len(batch)
                progress.update(batch_task, advance=1, info=f"loss {total_loss / seen:.4f}")
                if not console.is_terminal and time.perf_counter() - last_line >= _PLAIN_PROGRESS_SECONDS:
                    last_line = time.perf_counter()
                    rate = step / (last_line - started)
                    console.print(
                        f"  epoch {epoch + 1} batch {step}/{len(loader)}  loss {total_loss / seen:.4f}  "
                        f"{rate:.2f} batches/s"
                    )
            progress.remove_task(batch_task)

            dev_scores, _ = Predictor(model, text, vocab, cfg, device).evaluate(dev)
            dev_f1 = dev_scores[PRIMARY]["f1"]
            improved = dev_f1 > best_f1
            if improved:
                best_f1, best_epoch = dev_f1, epoch
                run.save_best(model.state_dict(), epoch, dev_f1)
            run.save_state(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                    "epoch": epoch,
                    "best_f1": best_f1,
                    "best_epoch": best_epoch,
                },
            )
            elapsed = time.perf_counter() - started
            record = {
                "event": "epoch",
                "epoch": epoch + 1,
                "train_loss": total_loss / max(1, seen),
                "dev": {k: dev_scores[PRIMARY][k] for k in ("precision", "recall", "f1")},
                "best": improved,
                "lr": scheduler.get_last_lr()[0],
                "seconds": round(elapsed, 2),
            }
            run.log(record)
            progress.update(epochs_task, advance=1, info=f"dev F1 {pct(dev_f1)} (best {pct(best_f1)})")
            console.print(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {record['train_loss']:.4f}  dev F1 {pct(dev_f1)}"
                f"{'  *' if improved else ''}  ({elapsed:.1f}s)"
            )
            if stop_after_epoch is not None and stop_after_epoch(epoch):
                return {"completed": False, "best_epoch": best_epoch + 1, "best_dev_f1": best_f1}
    return {"completed": True, "best_epoch": best_epoch + 1, "best_dev_f1": best_f1}
