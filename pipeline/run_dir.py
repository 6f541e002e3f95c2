"""The run directory: one type that creates a run, checkpoints it, records it, and rebuilds its model.

Layout (JSON is UTF-8; scores in every file are fractions in [0, 1])::

    config.json              format version, model (recipe) name, ModelConfig ("model_config", with the
                             windowing: max_length, stride; runs written before it moved there keep
                             those under "train" and load the same), TrainConfig ("train"), the text
                             side's description, dataset, data root, feature cache path + pinned manifest
                             ("features"), the training data's tweet-tokenisation style (for ``umt predict``)
    labels.json              the BIO2 label vocabulary (order = model output ids)
    text/                    the text side's files (for Hugging Face encoders: config + tokenizer;
                             the weights live in model.safetensors) and umt-files.json, their names
    model.safetensors        model state_dict of the epoch with the best dev F1 (safetensors; its
                             metadata holds the epoch and the dev F1)
    last.pt                  full training state after the last completed epoch (removed when the run ends)
    metrics.json             dev and test scores of the best epoch: P/R/F1 overall and per type, both schemes
    predictions_test.conll   word<TAB>gold<TAB>predicted, blank line between posts, "# image: <id>" headers
    log.jsonl                one JSON object per event (start, epoch, resume, interrupted, end)
    env.json                 package versions, device, command line
    visual_stats.safetensors channel mean/std of the training grids (only with standardize_visual)
    tb/                      TensorBoard event files (only with ``--log-to tensorboard``)
    mlflow.db                the run's MLflow store (only with ``--log-to mlflow`` and no ``--tracking-uri``)
    tracking.json            the MLflow run's id and store, so a resumed run continues it
    wandb/                   wandb's offline runs (only with ``--log-to wandb``; wandb's own layout)
    .lock                    held while a process trains the run (see :meth:`RunDir.claimed`)

A run carries everything its model needs to rebuild itself, the way flair's checkpoints carry
their constructor arguments: ``umt.pipeline.inference.trained.load_run`` reads the recipe name,
the configs, the label vocabulary and the text side from these files and the weights from
``model.safetensors``, with no hub, no dataset and no code outside the registry.
``umt.load(path)`` is this, for users. This module is the files only: it reads and writes them
and builds no model.

A run directory is handed from person to person, so nothing in it is trusted:

- no file in it can run code. Weights and statistics are safetensors (a JSON header and raw
  numbers); the resumable state ``last.pt`` is read with ``torch.load(weights_only=True)``, which
  rebuilds only tensors and plain containers (torch >= 2.6, where that loader is sound). Runs of
  format version 2 (``best.pt``, ``visual_stats.pt``) load through the same weights-only reader.
- every file is read as a regular file, never through a symbolic link, and JSON files are
  size-checked before they are read; a damaged, oversized or ill-typed file is a ConfigError
  naming it, never a traceback.
- ``umt train`` writes only into an empty folder or a folder that already holds a umt run and
  nothing else (:meth:`RunDir.claimed`), removes only the files a run writes (by name, never
  recursively; in ``text/`` the names its listing gives), and holds the folder's lock while it
  trains, so a second job on the same ``--out`` stops at once.

Every file is written atomically (``umt.cache.durable``), with the umask's permissions, so a
crash never leaves a torn file.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from umt.cache.durable import (
    atomic_write,
    atomic_write_bytes,
    open_append,
    read_regular,
    remove_owned,
    temporary_target,
)
from umt.cache.lock import file_lock
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.files import MAX_JSON_BYTES, JSONProblem, parse_json, read_json_file, write_json
from umt.pipeline.labels import LabelVocab
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.text.tweets import DEFAULT_STYLE
from umt.pipeline.train_config import MOVED_TO_MODEL, TrainConfig

if TYPE_CHECKING:
    from umt.pipeline.text.base import TextSide

FORMAT_VERSION = 3
#: The largest run file :meth:`RunDir.copy_from` copies (test predictions of a large test set).
MAX_COPY_BYTES = 512 << 20
#: Run formats this version reads: 2 kept the weights in ``best.pt`` (read weights-only).
READABLE_VERSIONS = (2, FORMAT_VERSION)
#: What the safetensors metadata of a run's weights says they are.
WEIGHTS_FORMAT = "umt-weights"
#: How deep below a folder that is not a run ``RunDir.open`` looks for runs to suggest.
SUGGEST_DEPTH = 3
SUGGEST_COUNT = 5


def _typed(data: dict, key: str, kind: type | tuple[type, ...], origin: Path, optional: bool = False) -> Any:
    """``data[key]`` checked to be a ``kind`` (None allowed when ``optional``)."""
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"{origin}: damaged run config (no {key!r})")
    value = data[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ConfigError(f"{origin}: damaged run config ({key!r} must be a {names}, found {type(value).__name__})")
    return value


@dataclass(frozen=True)
class RunConfig:
    """What ``config.json`` holds: enough to rebuild the model and to find its data."""

    model: str
    dataset: str
    data_root: str
    model_cfg: ModelConfig
    train_cfg: TrainConfig
    text: dict[str, Any]  # the text side's describe(): at least its kind
    #: The image-feature cache the run read: {"path", "manifest"} (config.json's "features"), None when text-only.
    cache: dict[str, Any] | None
    no_images: bool = False
    #: How the training data split tweets (``pipeline.text.tweets``): what ``umt predict`` uses on raw text.
    token_style: str = DEFAULT_STYLE
    #: The run format the directory was written in (:data:`READABLE_VERSIONS`).
    version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "dataset": self.dataset,
            "data_root": self.data_root,
            "model_config": self.model_cfg.to_dict(),
            "train": self.train_cfg.to_dict(),
            "text": self.text,
            "features": self.cache,
            "no_images": self.no_images,
            "token_style": self.token_style,
        }

    @classmethod
    def from_json(cls, data: Any, origin: Path) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a JSON object, found {type(data).__name__}")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise ConfigError(
                f"{origin}: run format version {version!r}, this umt reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; retrain the run with this version"
            )
        text = _typed(data, "text", dict, origin)
        if not isinstance(text.get("kind"), str):
            raise ConfigError(f"{origin}: damaged run config (the text side has no 'kind')")
        dataset = _typed(data, "dataset", str, origin)
        if not dataset or dataset in (".", "..") or any(c in dataset for c in "/\\") or not dataset.isprintable():
            raise ConfigError(f"{origin}: damaged run config (the dataset {dataset!r} is not a plain folder name)")
        features = _typed(data, "features", dict, origin, optional=True)
        if features is not None and not (
            isinstance(features.get("path"), str) and isinstance(features.get("manifest"), dict)
        ):
            raise ConfigError(f"{origin}: damaged run config ('features' needs a 'path' and a 'manifest')")
        train = dict(_typed(data, "train", dict, origin))
        moved = {key: train.pop(key) for key in MOVED_TO_MODEL if key in train}  # runs written before the move
        try:
            return cls(
                model=_typed(data, "model", str, origin),
                dataset=dataset,
                data_root=_typed(data, "data_root", str, origin),
                model_cfg=ModelConfig.from_dict({**_typed(data, "model_config", dict, origin), **moved}),
                train_cfg=TrainConfig.from_dict(train),
                text=dict(text),
                cache=features,
                no_images=bool(_typed(data, "no_images", bool, origin, optional=True)),
                token_style=_typed(data, "token_style", str, origin, optional=True) or DEFAULT_STYLE,
                version=version,
            )
        except ConfigError as e:
            raise ConfigError(f"{origin}: damaged run config ({e})") from None
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{origin}: damaged run config ({type(e).__name__}: {e})") from None


def _tensor_dict(value: Any) -> bool:
    import torch

    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())


class RunDir:
    """One run's folder. ``RunDir(path)`` names it; :meth:`claimed` prepares it for training and
    :meth:`open` checks that it holds a finished run."""

    CONFIG = "config.json"
    LABELS = "labels.json"
    TEXT = "text"
    WEIGHTS = "model.safetensors"
    LAST = "last.pt"
    METRICS = "metrics.json"
    PREDICTIONS = "predictions_test.conll"
    LOG = "log.jsonl"
    ENV = "env.json"
    VISUAL_STATS = "visual_stats.safetensors"
    LOCK = ".lock"
    #: Written by the trackers of ``umt train --log-to`` (``umt.pipeline.tracking``).
    TENSORBOARD = "tb"
    MLFLOW_DB = "mlflow.db"
    MLFLOW_JOURNAL = "mlflow.db-journal"  # SQLite's, while a write is under way
    TRACKING = "tracking.json"
    WANDB = "wandb"
    #: The names of TensorBoard's event files, the only ones ever removed from ``tb/``.
    EVENTS_PATTERN = "events.out.tfevents.*"
    #: In ``text/``: the names the text side wrote there, the only ones ever removed from it.
    TEXT_LISTING = "umt-files.json"
    #: Written by format version 2; read (weights-only) so those runs still load.
    LEGACY_WEIGHTS = "best.pt"
    LEGACY_VISUAL_STATS = "visual_stats.pt"
    #: Every name umt writes into a run directory (``umt eval`` adds ``eval_<data>.json``).
    FILES = (
        CONFIG,
        LABELS,
        TEXT,
        WEIGHTS,
        LAST,
        METRICS,
        PREDICTIONS,
        LOG,
        ENV,
        VISUAL_STATS,
        LEGACY_WEIGHTS,
        LEGACY_VISUAL_STATS,
        TENSORBOARD,
        MLFLOW_DB,
        MLFLOW_JOURNAL,
        TRACKING,
        WANDB,
    )
    #: The names of ``FILES`` that are folders; wandb's is wandb's to fill, its contents unchecked.
    FOLDERS = (TEXT, TENSORBOARD, WANDB)
    EVAL_PATTERN = "eval_*.json"

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ---- state -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return (self.path / self.METRICS).is_file()

    @property
    def resumable(self) -> bool:
        """An interrupted run: at least one epoch completed, not finished."""
        return (self.path / self.LAST).is_file() and not self.finished

    @classmethod
    def written_by_umt(cls, name: str) -> bool:
        """Whether ``name`` is a file or folder umt writes into a run directory (or its temporary file)."""
        target = temporary_target(name)
        if target is not None:
            return cls.written_by_umt(target)
        return name in cls.FILES or fnmatch.fnmatchcase(name, cls.EVAL_PATTERN)

    def _text_files(self) -> set[str]:
        """The names in ``text/`` its listing says the text side wrote (the listing included); none
        without a readable listing."""
        try:
            listed = read_json_file(self.text_dir / self.TEXT_LISTING)
        except ConfigError:
            return set()
        if not isinstance(listed, list) or not all(isinstance(name, str) for name in listed):
            return set()
        return {*listed, self.TEXT_LISTING}

    def _not_written_by_umt(self) -> list[str]:
        """What the folder holds that umt did not write: other names, links, a folder or file of the
        wrong kind, files in ``text/`` its listing does not name."""
        unknown = []
        for name in self._entries():
            path = self.path / name
            if not self.written_by_umt(name) or path.is_symlink() or path.is_dir() != (name in self.FOLDERS):
                unknown.append(name)
        unknown += self._foreign(self.TEXT, self._text_files().__contains__)
        unknown += self._foreign(self.TENSORBOARD, self._event_file)
        return sorted(unknown)

    @classmethod
    def _event_file(cls, name: str) -> bool:
        return fnmatch.fnmatchcase(name, cls.EVENTS_PATTERN)

    def _foreign(self, folder: str, owned: Callable[[str], bool]) -> list[str]:
        """``folder/name`` for each entry of the run's ``folder`` (if it is a real folder) that is not
        a regular file ``owned`` accepts."""
        path = self.path / folder
        if not path.is_dir() or path.is_symlink():
            return []
        with os.scandir(path) as entries:
            return [f"{folder}/{e.name}" for e in entries if not owned(e.name) or not e.is_file(follow_symlinks=False)]

    def _entries(self) -> list[str]:
        """Names in the folder besides the lock."""
        return sorted(name for name in os.listdir(self.path) if name != self.LOCK)

    def _holds_a_run(self) -> bool:
        """Whether ``config.json`` is a run config this umt reads (another tool's config.json is not)."""
        try:
            self.config()
        except ConfigError:
            return False
        return True

    @contextlib.contextmanager
    def claimed(self, *, resume: bool, overwrite: bool) -> Iterator[str]:
        """Hold the folder for training: yields ``"new"``, ``"resume"`` or ``"finished"`` (skip it).

        The folder is created if absent. It is used only when it is empty or holds a umt run and
        nothing else; anything else is refused before a file is touched, so a mistyped ``--out``
        (``~/thesis``, ``.``) deletes nothing. A finished or resumable run is replaced only with
        ``overwrite``; a run that failed before completing an epoch holds nothing to keep and is
        replaced. The folder's lock is held for the block: a second process claiming it fails at
        once, naming the holder. When the block ends and the run is neither finished nor
        resumable (training failed or was stopped in its first epoch), the files a run writes are
        removed, and the folder too if this claim created it and it is then empty.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} exists and is not a folder; choose another --out")
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run directory {self.path}: {e.strerror}") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"cannot write into the run directory {self.path}: permission denied")
        state = None
        try:
            with file_lock(self.path / self.LOCK, self._busy, ConfigError):
                state = self._prepare(resume, overwrite)
                try:
                    yield state
                finally:
                    if self._abandoned(state):
                        self._clear()
        finally:
            if created and self._abandoned(state):
                with contextlib.suppress(OSError):
                    self.path.rmdir()  # only if empty: the lock is gone, a file of someone else's stays

    def _abandoned(self, state: str | None) -> bool:
        """A claim that was refused, or a new run that ended before completing an epoch."""
        return state is None or (state == "new" and not (self.finished or self.resumable))

    def _busy(self, holder: str) -> str:
        return (
            f"{self.path} is being trained by {holder} (lock {self.path / self.LOCK}); wait for it to finish, "
            "or choose another --out"
        )

    def _prepare(self, resume: bool, overwrite: bool) -> str:
        entries = self._entries()
        unknown = self._not_written_by_umt()
        if unknown:
            shown = ", ".join(unknown[:3]) + (f" and {len(unknown) - 3} more" if len(unknown) > 3 else "")
            raise ConfigError(
                f"{self.path} holds files umt did not write ({shown}); umt train writes only into an empty folder "
                "or a umt run directory: choose another --out"
            )
        if not entries:
            return "new"
        if not self._holds_a_run():
            raise ConfigError(
                f"{self.path} holds run files but no readable umt {self.CONFIG}; remove them yourself, or choose "
                "another --out"
            )
        if resume and self.finished:
            return "finished"
        if resume and self.resumable:
            return "resume"
        if (self.finished or self.resumable) and not overwrite:
            hint = "--resume to continue it" if self.resumable else "--overwrite to replace it"
            raise ConfigError(f"{self.path} already holds a run; use {hint}, or choose another --out")
        self._clear()
        return "new"

    def _clear(self) -> None:
        """Remove the files umt writes into a run directory (``text/`` only as far as its listing
        names them, ``tb/`` its event files), and nothing else: not the lock, nothing anyone else
        put there, not ``wandb/`` (wandb's tree of offline runs, each its own run, is kept)."""
        try:
            if self.text_dir.is_dir() and not self.text_dir.is_symlink():
                remove_owned(self.text_dir, self._text_files().__contains__, and_folder=True)
            events = self.path / self.TENSORBOARD
            if events.is_dir() and not events.is_symlink():
                remove_owned(events, self._event_file, and_folder=True)
            remove_owned(self.path, self.written_by_umt)
        except OSError as e:
            raise ConfigError(f"cannot replace the run in {self.path}: {e.strerror}") from None

    @classmethod
    def open(cls, path: Path | str) -> RunDir:
        """A finished run (its config, labels and weights present), else a ConfigError saying what it is."""
        run = cls(path)
        if not run.path.is_dir():
            raise ConfigError(f"{run.path} is not a run directory (no such folder)")
        if not (run.path / cls.CONFIG).exists():
            raise ConfigError(f"{run.path} is not a run directory: it has no {cls.CONFIG}{run._runs_below()}")
        needed = (cls.LABELS, cls.WEIGHTS if not (run.path / cls.LEGACY_WEIGHTS).exists() else cls.LEGACY_WEIGHTS)
        for name in needed:
            if not (run.path / name).exists():
                state = "an unfinished run (continue it with umt train --resume)" if run.resumable else "not a run"
                raise ConfigError(f"{run.path}: {state}: it has no {name}")
        return run

    def _runs_below(self) -> str:
        """``"; the runs below it: A, B"`` naming run folders under this one, or a hint."""
        found: list[str] = []
        for folder, subfolders, files in os.walk(self.path):
            depth = len(Path(folder).relative_to(self.path).parts)
            if self.CONFIG in files and depth:
                found.append(str(Path(folder)))
                subfolders.clear()
            if depth >= SUGGEST_DEPTH:
                subfolders.clear()
            subfolders.sort()
            if len(found) > SUGGEST_COUNT:
                break
        if not found:
            return " (a run directory is the folder `umt train` wrote, e.g. runs/<dataset>/<model>/seed1)"
        shown = ", ".join(sorted(found)[:SUGGEST_COUNT]) + (" ..." if len(found) > SUGGEST_COUNT else "")
        return f"; the run directories below it: {shown}"

    # ---- files -------------------------------------------------------------------------------

    def _write(self, name: str, data: bytes) -> None:
        try:
            atomic_write_bytes(self.path / name, data)
        except OSError as e:
            raise ConfigError(f"cannot write {self.path / name}: {e.strerror}") from None

    def write_json(self, name: str, obj: Any) -> None:
        write_json(self.path / name, obj)

    def read_json(self, name: str) -> Any:
        return read_json_file(self.path / name)

    def _check_regular(self, name: str) -> Path:
        """The path of run file ``name`` once it is known to be a regular file (not a link)."""
        path = self.path / name
        if path.is_symlink():
            raise ConfigError(f"cannot read {path}: it is a symbolic link; umt does not follow links in a run")
        if not path.is_file():
            raise ConfigError(f"{path} is missing" if not path.exists() else f"cannot read {path}: not a regular file")
        if path.stat().st_size == 0:
            raise ConfigError(f"{path} is empty (0 bytes): the file is damaged; train the run again")
        return path

    def copy_from(self, other: RunDir, name: str, limit: int = MAX_COPY_BYTES) -> None:
        """Run file ``name`` of ``other`` (a regular file of at most ``limit`` bytes), written here atomically."""
        path = other._check_regular(name)
        try:
            data = read_regular(path, limit, what=f"a run's {name}")
        except OSError as e:  # UnsafeFile (a link swapped in, over the limit) is an OSError too
            raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
        self._write(name, data)

    def save_tensors(self, name: str, tensors: dict, metadata: dict[str, str]) -> None:
        """``tensors`` (name -> tensor) as a safetensors file, written atomically."""
        from safetensors.torch import save

        try:
            data = save(_unshared(tensors), metadata=metadata)
        except (ValueError, RuntimeError) as e:
            raise ConfigError(f"cannot write {self.path / name}: {e}") from None
        self._write(name, data)

    def load_tensors(self, name: str) -> tuple[dict, dict[str, str]]:
        """The tensors and the metadata of the safetensors file ``name`` (on the CPU)."""
        from safetensors import safe_open

        path = self._check_regular(name)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types for a damaged file
            raise ConfigError(
                f"{path} cannot be read ({_first_sentence(e)}): the file is damaged or truncated; train the run again"
            ) from None

    def save_torch(self, name: str, obj: Any) -> None:
        import torch

        try:
            atomic_write(self.path / name, lambda handle: torch.save(obj, handle))
        except OSError as e:
            raise ConfigError(f"cannot write {self.path / name}: {e.strerror}") from None

    def load_torch(self, name: str) -> Any:
        """A torch file read with the weights-only unpickler: tensors and plain containers, no code."""
        import pickle

        import torch

        path = self._check_regular(name)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ConfigError(
                f"{path} holds objects other than tensors and plain values ({_first_sentence(e)}); umt does not "
                "load it, because unpickling such a file can run code"
            ) from None
        except Exception as e:  # noqa: BLE001 - any parse failure of a user's file: truncated, corrupt, not torch
            raise ConfigError(
                f"{path} cannot be read ({type(e).__name__}: {_first_sentence(e)}): the file is damaged or "
                "truncated; train the run again"
            ) from None

    def write_config(self, config: RunConfig) -> None:
        self.write_json(self.CONFIG, config.to_json())

    def config(self) -> RunConfig:
        return RunConfig.from_json(self.read_json(self.CONFIG), self.path / self.CONFIG)

    def save_vocab(self, vocab: LabelVocab) -> None:
        self.write_json(self.LABELS, vocab.to_json())

    def vocab(self) -> LabelVocab:
        data = self.read_json(self.LABELS)
        try:
            return LabelVocab.from_json(data)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{self.path / self.LABELS}: damaged label vocabulary ({e})") from None

    @property
    def text_dir(self) -> Path:
        return self.path / self.TEXT

    def save_text(self, text: TextSide) -> None:
        """The text side's files into a new ``text/`` (a claimed folder has none), and their listing."""
        try:
            self.text_dir.mkdir()
            text.save(self.text_dir)
            written = sorted(os.listdir(self.text_dir))
        except OSError as e:
            raise ConfigError(f"cannot write {self.text_dir}: {e.strerror}") from None
        write_json(self.text_dir / self.TEXT_LISTING, written)

    def checked_text_dir(self) -> Path:
        """``text/``, once it is known to be a folder of regular files (no links out of the run)."""
        folder = self.text_dir
        if folder.is_symlink() or not folder.is_dir():
            what = "a symbolic link" if folder.is_symlink() else "missing"
            raise ConfigError(f"{folder} is {what}: the run is damaged")
        for entry in os.scandir(folder):
            if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                raise ConfigError(f"{folder / entry.name}: not a regular file; a run's text/ holds only files")
        return folder

    def save_visual_stats(self, state: dict) -> None:
        """``VisualStats.state()``: the channel ``mean`` and ``std`` tensors and the ``images`` count."""
        self.save_tensors(
            self.VISUAL_STATS, {"mean": state["mean"], "std": state["std"]}, {"images": str(state["images"])}
        )

    def visual_stats(self) -> tuple[dict, Path] | None:
        """The stored visual standardisation statistics (``mean``, ``std``, ``images``, unchecked)
        and the file they came from, or None when the run trained without them."""
        if (self.path / self.VISUAL_STATS).exists() or (self.path / self.VISUAL_STATS).is_symlink():
            tensors, metadata = self.load_tensors(self.VISUAL_STATS)
            return {**tensors, "images": metadata.get("images", "0")}, self.path / self.VISUAL_STATS
        if (self.path / self.LEGACY_VISUAL_STATS).exists():
            return self.load_torch(self.LEGACY_VISUAL_STATS), self.path / self.LEGACY_VISUAL_STATS
        return None

    def save_best(self, state_dict: dict, epoch: int, dev_f1: float) -> None:
        metadata = {"format": WEIGHTS_FORMAT, "epoch": str(epoch), "dev_f1": repr(float(dev_f1))}
        self.save_tensors(self.WEIGHTS, state_dict, metadata)

    def best_weights(self) -> dict:
        """The best epoch's state dict (``model.safetensors``; ``best.pt`` in a format-2 run)."""
        if (self.path / self.WEIGHTS).exists() or (self.path / self.WEIGHTS).is_symlink():
            return self.load_tensors(self.WEIGHTS)[0]
        state = self.load_torch(self.LEGACY_WEIGHTS)
        if not isinstance(state, dict) or not _tensor_dict(state.get("model")):
            raise ConfigError(f"{self.path / self.LEGACY_WEIGHTS} is not a umt checkpoint (no model weights)")
        return state["model"]

    def save_state(self, state: dict) -> None:
        self.save_torch(self.LAST, state)

    def state(self) -> dict:
        state = self.load_torch(self.LAST)
        if not isinstance(state, dict) or not _tensor_dict(state.get("model")):
            raise ConfigError(f"{self.path / self.LAST} is not a umt training state (no model weights)")
        return state

    def finish(self, metrics: dict, posts: Sequence[Post], predictions: Sequence[Sequence[str]]) -> None:
        """Write metrics and test predictions, drop the resumable state: the run is finished."""
        self.write_predictions(self.PREDICTIONS, posts, predictions)
        self.write_json(self.METRICS, metrics)
        (self.path / self.LAST).unlink(missing_ok=True)

    def metrics(self) -> dict:
        return self.read_json(self.METRICS)

    def write_predictions(self, name: str, posts: Sequence[Post], predictions: Sequence[Sequence[str]]) -> None:
        lines: list[str] = []
        for post, pred in zip(posts, predictions, strict=True):
            lines.append(f"# image: {post.image if post.image is not None else '-'}")
            gold = post.labels if post.labels is not None else ["-"] * len(post.tokens)
            lines.extend(f"{w}\t{g}\t{p}" for w, g, p in zip(post.tokens, gold, pred, strict=True))
            lines.append("")
        self._write(name, ("\n".join(lines) + "\n").encode("utf-8"))

    def log(self, record: dict) -> None:
        """Append one event to ``log.jsonl`` (one write call per line, flushed; never through a link)."""
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
        try:
            with open_append(self.path / self.LOG) as handle:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
        except OSError as e:
            raise ConfigError(f"cannot write {self.path / self.LOG}: {e.strerror or e}") from None

    def events(self) -> list[dict]:
        """The events of ``log.jsonl`` (none if it is absent; lines that are not objects skipped); a
        damaged line is a ConfigError naming it."""
        path = self.path / self.LOG
        if not path.is_file() and not path.is_symlink():
            return []
        try:
            lines = read_regular(path, MAX_JSON_BYTES).decode("utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise ConfigError(f"cannot read {path}: not UTF-8 text ({e.reason})") from None
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror or e}") from None
        events = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                event = parse_json(line)
            except JSONProblem as e:
                raise ConfigError(f"{path}:{number}: not valid JSON ({e.reason}); the file is damaged") from None
            if isinstance(event, dict):
                events.append(event)
        return events

    def write_env(self, env: dict) -> None:
        """The environment the run trained in (``umt.pipeline.runtime.environment``)."""
        self.write_json(self.ENV, env)


def _first_sentence(error: Exception) -> str:
    """A library error's first sentence, on one line (torch's and safetensors' messages run long)."""
    return " ".join(str(error).split()).split(". ")[0][:160]


def _unshared(tensors: dict) -> dict:
    """The state dict with every tensor contiguous and owning its whole storage: safetensors
    refuses tensors that share memory (tied weights, views of one buffer)."""
    out, seen = {}, set()
    for key, tensor in tensors.items():
        tensor = tensor.detach()
        storage = tensor.untyped_storage()
        shared = storage.data_ptr() in seen or storage.nbytes() != tensor.nbytes or not tensor.is_contiguous()
        if tensor.numel() and shared:
            tensor = tensor.clone().contiguous()
        if tensor.numel():
            seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out
