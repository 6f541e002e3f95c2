"""``umt export``: a finished run as a folder in the Hugging Face model-repository layout.

The folder is itself a run directory that ``umt.load``, ``umt predict``, ``umt eval`` and
``umt serve`` read (locally, or by hub id once it is pushed, e.g. with ``hf upload``)::

    README.md                 the model card (umt.pipeline.sharing.card), with the hub's metadata header
    config.json               the run's settings; this machine's paths are left out (data_root "",
                              the feature cache's path ""; its pinned manifest is kept, so new images
                              are featurised exactly as in training)
    labels.json               the label vocabulary
    model.safetensors         the best epoch's weights (weights only: loading it runs no code)
    text/                     the tokenizer or vocabulary files and their listing
    metrics.json              dev and test scores
    predictions_test.conll    the test predictions beside the gold tags (what ``umt serve`` browses)
    visual_stats.safetensors  only for runs that standardised the visual features

The run is loaded first, so a damaged run is refused rather than shared, and a run of an older
format comes out in the current one. The folder is written under a temporary name beside
``out`` and renamed into place when complete: an interrupted export leaves no half folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from umt.cache.durable import atomic_write_bytes, fsync_dir
from umt.pipeline.errors import ConfigError
from umt.pipeline.inference.trained import load_run
from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.run_dir import RunDir
from umt.pipeline.sharing.card import model_card

CARD = "README.md"
#: What an export folder holds; ``--overwrite`` replaces only a folder of these names.
EXPORTED = (CARD, RunDir.CONFIG, RunDir.LABELS, RunDir.WEIGHTS, RunDir.TEXT, RunDir.METRICS)
EXPORTED_IF_PRESENT = (RunDir.PREDICTIONS, RunDir.VISUAL_STATS)


def _check_target(out: Path, overwrite: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"{out} exists and is not a folder; name a new folder to export to")
    if not out.exists():
        if not out.parent.is_dir():
            raise ConfigError(f"cannot export to {out}: the folder {out.parent} does not exist")
        return
    held = sorted(os.listdir(out))
    if not held:
        return
    if not overwrite:
        raise ConfigError(f"{out} is not empty; choose a new folder, or pass --overwrite to replace an earlier export")
    foreign = [name for name in held if name not in EXPORTED + EXPORTED_IF_PRESENT]
    if foreign or CARD not in held:
        what = f"it holds {', '.join(foreign[:3])}" if foreign else f"it has no {CARD}"
        raise ConfigError(f"{out} is not an earlier umt export ({what}); --overwrite replaces only an export")


def export_run(source: Path | str | RunDir, out: Path | str, name: str | None = None, overwrite: bool = False) -> Path:
    """Write the export folder of run ``source`` at ``out`` (module docstring); returns ``out``."""
    run = source if isinstance(source, RunDir) else RunDir.open(source)
    out = Path(out)
    _check_target(out, overwrite)
    trained = load_run(run, "cpu")
    config = trained.config
    metrics = run.metrics() if run.finished else {}
    cache = None if config.cache is None else {"path": "", "manifest": config.cache.get("manifest", {})}
    shared = replace(config, data_root="", cache=cache)
    label = name or out.name
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        target = RunDir(work)
        target.write_config(shared)
        target.save_vocab(trained.vocab)
        tensors, metadata = (
            run.load_tensors(run.WEIGHTS) if (run.path / run.WEIGHTS).exists() else (run.best_weights(), {})
        )
        target.save_tensors(run.WEIGHTS, tensors, metadata)
        target.save_text(trained.text)
        target.write_json(run.METRICS, metrics)
        if (run.path / run.PREDICTIONS).exists():
            target.copy_from(run, run.PREDICTIONS)
        if trained.visual_stats is not None:
            target.save_visual_stats(trained.visual_stats.state())
        recipe = get_recipe(config.model)
        card = model_card(shared, metrics, label, recipe.help, not trained.ignores_images)
        atomic_write_bytes(work / CARD, card.encode("utf-8"))
        os.chmod(work, 0o777 & ~_umask())
        if out.exists():
            try:
                _replace_export(out)
            except OSError as e:
                raise ConfigError(f"cannot replace the earlier export in {out}: {e.strerror}") from None
        os.replace(work, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def _replace_export(out: Path) -> None:
    """Empty an earlier export (checked by :func:`_check_target`), file by file, never through a link."""
    for name in os.listdir(out):
        path = out / name
        if name == RunDir.TEXT and path.is_dir() and not path.is_symlink():
            for entry in os.scandir(path):
                if entry.is_file(follow_symlinks=False) or entry.is_symlink():
                    os.unlink(entry.path)
            path.rmdir()
        elif path.is_file() or path.is_symlink():
            os.unlink(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
