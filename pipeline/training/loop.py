"""The fit loop. It knows one thing about a model: ``loss = model(batch)`` for training, and
evaluates dev through :class:`umt.pipeline.inference.predictor.Predictor` (``model.decode``).

Model selection uses the dev split only (entity-level micro F1, seqeval default scheme); the
caller scores the test split once, with the selected checkpoint. ``patience`` stops a run
after that many epochs without a better dev F1.

Steps: each optimiser step trains on ``batch_size`` windows (:mod:`umt.pipeline.training.sampling`),
cut into ``grad_accum`` parts per process; under torchrun (:mod:`umt.pipeline.runtime.distributed`) the model is
wrapped in DistributedDataParallel, every process trains on its parts of the same steps, and
evaluation is split over the processes and gathered by window, so every post counts once. Only
the main process writes to the run directory.

Resume: after every completed epoch the full training state (model, optimiser, schedule,
RNG states of every process, best score so far) is written atomically to ``last.pt``. The
order of epoch ``e`` comes from a generator seeded with ``(seed, e)`` and the RNG (dropout) is
restored from the checkpoint, so a run killed after epoch ``k`` and resumed reproduces the
uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from umt.cache.durable import interrupts_deferred
from umt.pipeline.data.batching import Collator, MnerDataset, make_loader
from umt.pipeline.errors import ConfigError, UmtError
from umt.pipeline.inference.predictor import Predictor
from umt.pipeline.labels import LabelVocab
from umt.pipeline.metrics import PRIMARY, pct
from umt.pipeline.run_dir import RunDir
from umt.pipeline.runtime.devices import resolve_device
from umt.pipeline.runtime.distributed import World
from umt.pipeline.text.base import TextSide
from umt.pipeline.train_config import TrainConfig
from umt.pipeline.training.observers import Observers
from umt.pipeline.training.optim import make_optimizer
from umt.pipeline.training.sampling import StepSampler

#: Without a terminal (batch jobs, nohup) the live bars are invisible: print a line this often.
_PLAIN_PROGRESS_SECONDS = 30.0
#: The progress bar's running loss is read back from the device this often (in steps).
_LOSS_EVERY = 10


class TrainingInterrupted(UmtError):
    """Ctrl-C during training: the run keeps its last completed epoch and can be resumed."""

    exit_code = 130


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


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
    world: World | None = None,
    observers: Observers | None = None,
) -> dict:
    """Train, keeping the best dev checkpoint in ``run/model.safetensors``; returns a summary dict.

    ``stop_after_epoch(epoch)`` returning True ends training after that epoch as if the
    process had been killed there (tests use it to check that resuming is exact). Ctrl-C
    raises :class:`TrainingInterrupted` naming the last completed epoch. ``world``: the
    processes training together (one, by default); all call ``fit`` alike. ``observers`` hear of
    every step and epoch (:mod:`umt.pipeline.training.observers`), on the main process only.
    """
    world = world or World()
    heard = observers if observers is not None and world.main else Observers()
    loop = _Loop(model, train, dev, text, vocab, cfg, run, console or Console(), world, heard)
    if resume:
        loop.restore()
    try:
        return loop.epochs(stop_after_epoch)
    except KeyboardInterrupt:
        done = run.state()["epoch"] + 1 if run.resumable else 0
        if loop.world.main:
            run.log({"event": "interrupted", "completed_epochs": done})
        hint = "rerun the same command with --resume to continue" if done else "nothing to resume: run it again"
        raise TrainingInterrupted(f"interrupted after epoch {done} of {cfg.epochs} ({run.path}); {hint}") from None


def _learning_rates(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The rate each named parameter group (``encoder``, ``head``, ``model``) trains at now."""
    return {group.get("name", "model"): group["lr"] for group in optimizer.param_groups}


class _Loop:
    """One run's training state: model, optimiser, schedule, the epoch to start at, the best score."""

    def __init__(
        self,
        model,
        train: MnerDataset,
        dev: MnerDataset,
        text: TextSide,
        vocab: LabelVocab,
        cfg: TrainConfig,
        run: RunDir,
        console: Console,
        world: World,
        observers: Observers,
    ):
        self.model, self.train, self.dev, self.cfg, self.run, self.console = model, train, dev, cfg, run, console
        self.world, self.observers = world, observers
        self.device = resolve_device(world.device(cfg.device))
        model.to(self.device)
        self.sampler = StepSampler(
            len(train), cfg.batch_size, cfg.seed, cfg.grad_accum, world.rank, world.size,
            lengths=[item.window.positions for item in train.items], bucket=cfg.bucket,
        )  # fmt: skip
        self.optimizer, self.scheduler = make_optimizer(model, cfg, self.sampler.steps, self.device)
        self.collate = Collator(text, train.features.shape if train.features is not None else None)
        self.predictor = Predictor(model, text, vocab, cfg, self.device, world)
        self.precision = self.predictor.precision
        self.scaler = self.precision.scaler()
        self.start_epoch, self.best_f1, self.best_epoch = 0, -1.0, -1
        self.stepper = model
        if world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # Unused parameters exist: an image-less batch skips the fusion's visual layers.
            self.stepper = DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        if cfg.compile:
            self.stepper = torch.compile(self.stepper)

    def restore(self) -> None:
        """Continue from ``last.pt``: weights, optimiser, schedule, RNG, best score."""
        if not self.run.resumable:
            raise ConfigError(f"{self.run.path}: nothing to resume (no {RunDir.LAST}); start the run without --resume")
        state = self.run.state()
        try:
            self._load_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
            reason = " ".join(str(e).split())[:200]
            raise ConfigError(
                f"{self.run.path / RunDir.LAST} does not fit this run ({type(e).__name__}: {reason}); "
                "start the run again with --overwrite"
            ) from None
        self._log({"event": "resume", "epoch": self.start_epoch})
        self.console.print(
            f"resuming {escape(str(self.run.path))} at epoch {self.start_epoch + 1}/{self.cfg.epochs} "
            f"(best dev F1 {pct(self.best_f1)})"
        )

    def _load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        by_rank = state.get("rng_by_rank") or [state["rng"]]
        torch.set_rng_state(by_rank[self.world.rank] if len(by_rank) == self.world.size else state["rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None and not self.world.distributed:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        epoch, best_f1, best_epoch = state["epoch"], state["best_f1"], state["best_epoch"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (epoch, best_f1, best_epoch)):
            raise TypeError("epoch, best_f1 and best_epoch must be numbers")
        self.start_epoch, self.best_f1, self.best_epoch = int(epoch) + 1, float(best_f1), int(best_epoch)

    def _log(self, record: dict) -> None:
        if self.world.main:
            self.run.log(record)

    def _summary(self, completed: bool) -> dict:
        return {"completed": completed, "best_epoch": self.best_epoch + 1, "best_dev_f1": self.best_f1}

    def epochs(self, stop_after_epoch: Callable[[int], bool] | None) -> dict:
        cfg = self.cfg
        with _progress(self.console) as progress:
            epochs_task = progress.add_task("epochs", total=cfg.epochs, completed=self.start_epoch, info="")
            for epoch in range(self.start_epoch, cfg.epochs):
                if cfg.patience and epoch - self.best_epoch > cfg.patience:
                    self._log({"event": "early_stop", "epoch": epoch, "best_epoch": self.best_epoch + 1})
                    self.console.print(
                        f"no better dev F1 for {cfg.patience} epoch(s): stopping after epoch {epoch} "
                        f"(best: epoch {self.best_epoch + 1})"
                    )
                    break
                started = time.perf_counter()
                train_loss = self._train_epoch(epoch, progress, started)
                train_seconds = time.perf_counter() - started
                dev_scores, _ = self.predictor.evaluate(self.dev)
                dev_f1 = dev_scores[PRIMARY]["f1"]
                improved = dev_f1 > self.best_f1
                with interrupts_deferred():  # the epoch's files are written together or not at all
                    if improved:
                        self.best_f1, self.best_epoch = dev_f1, epoch
                        if self.world.main:
                            self.run.save_best(self.model.state_dict(), epoch, dev_f1)
                    self._checkpoint(epoch)
                    elapsed = time.perf_counter() - started
                    record = {
                        "event": "epoch",
                        "epoch": epoch + 1,
                        "train_loss": train_loss,
                        "dev": {k: dev_scores[PRIMARY][k] for k in ("precision", "recall", "f1")},
                        "best": improved,
                        "lr": self.scheduler.get_last_lr()[0],
                        "train_seconds": round(train_seconds, 2),
                        "seconds": round(elapsed, 2),
                    }
                    self._log(record)
                progress.update(epochs_task, advance=1, info=f"dev F1 {pct(dev_f1)} (best {pct(self.best_f1)})")
                self.console.print(
                    f"epoch {epoch + 1}/{cfg.epochs}  loss {train_loss:.4f}  dev F1 {pct(dev_f1)}"
                    f"{'  *' if improved else ''}  ({elapsed:.1f}s)"
                )
                self.observers.epoch(epoch + 1, record, dev_scores)  # may stop the run: it is saved
                if stop_after_epoch is not None and stop_after_epoch(epoch):
                    self.world.barrier()
                    return self._summary(completed=False)
        self.world.barrier()
        return self._summary(completed=True)

    def _sync(self, now: bool):
        """DDP all-reduces gradients in the backward pass of a step's last part only."""
        return nullcontext() if now or not self.world.distributed else self.stepper.no_sync()

    def _train_epoch(self, epoch: int, progress: Progress, started: float) -> float:
        """One pass over the training windows in this epoch's fixed order; the mean loss per window."""
        cfg, model, world = self.cfg, self.model, self.world
        self.sampler.set_epoch(epoch)
        parts = self.sampler.parts()
        indices = [part.indices for part in parts]
        loader = make_loader(self.train, self.collate, cfg.batch_size, cfg.num_workers, batches=indices)
        steps = self.sampler.steps
        task = progress.add_task(f"epoch {epoch + 1}", total=steps, info="")
        model.train()
        total = torch.zeros((), device=self.device)  # sum over this process's windows of their loss
        seen, last_line = 0, started
        micro = zip(loader, parts, strict=True)
        for step in range(1, steps + 1):
            before = total.clone() if self.observers else None
            seen_before = seen
            for k in range(cfg.grad_accum):
                batch, part = next(micro)
                batch = batch.to(self.device, non_blocking=True)
                with self._sync(k == cfg.grad_accum - 1):
                    with self.precision.autocast():
                        loss = self.stepper(batch)
                    scaled = loss * (part.size * world.size / part.step_size)  # this part's share of the step
                    (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
                total += loss.detach() * part.size
                seen += part.size
            rates = _learning_rates(self.optimizer)
            self._step(epoch)
            if before is not None:
                step_loss = (total - before).item() / max(1, seen - seen_before)
                self.observers.step(epoch * steps + step, epoch + 1, step_loss, rates)
            if step % _LOSS_EVERY == 0 or step == steps:
                progress.update(task, completed=step, info=f"loss {total.item() / max(1, seen):.4f}")
            if not self.console.is_terminal and time.perf_counter() - last_line >= _PLAIN_PROGRESS_SECONDS:
                last_line = time.perf_counter()
                self.console.print(
                    f"  epoch {epoch + 1} batch {step}/{steps}  loss {total.item() / max(1, seen):.4f}  "
                    f"{step / (last_line - started):.2f} batches/s"
                )
        progress.remove_task(task)
        losses, windows = zip(*world.gather((total.item(), seen)), strict=True)
        return sum(losses) / max(1, sum(windows))

    def _step(self, epoch: int) -> None:
        """Clip the step's gradient (identical in every process), update, advance the schedule."""
        optimizer, scaler = self.optimizer, self.scaler
        if scaler is not None:
            scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        if scaler is not None:  # an overflow skips the step and lowers the scale
            scaler.step(optimizer)
            scaler.update()
        else:
            if not torch.isfinite(norm):
                raise RuntimeError(f"epoch {epoch + 1}: the gradient became {norm.item()}; lower --lr")
            optimizer.step()
        self.scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _checkpoint(self, epoch: int) -> None:
        """The full training state after ``epoch``, for an exact resume (every process's RNG)."""
        rngs = self.world.gather(torch.get_rng_state())
        if not self.world.main:
            return
        self.run.save_state(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rngs[0],
                "rng_by_rank": rngs if self.world.distributed else None,
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                "epoch": epoch,
                "best_f1": self.best_f1,
                "best_epoch": self.best_epoch,
            }
        )
