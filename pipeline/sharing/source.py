"""Where a trained model comes from: a run directory, an exported folder, or a hub id.

``umt.load``, ``umt predict``, ``umt eval`` and ``umt serve`` take any of three:

- a run directory ``umt train`` wrote;
- a folder ``umt export`` wrote (the Hugging Face model-repository layout: the same
  ``config.json``, ``labels.json``, ``model.safetensors`` and ``text/``, plus a model card);
- a hub id ``owner/name`` (optionally ``owner/name@revision``), resolved through
  ``huggingface_hub.snapshot_download`` and its cache. With ``HF_HUB_OFFLINE=1`` a cached
  snapshot loads and a missing one is one line saying so.

A local folder wins over a hub id of the same spelling. A hub snapshot is someone else's files:
its entries are links into the repository's ``blobs/`` folder, and umt reads a model through no
link (``umt.pipeline.run_dir``). So the snapshot is checked first (every entry a folder, a
regular file, or a link to a regular file inside that repository's own cache folder; at most
:data:`MAX_FILES` files of at most :data:`MAX_DEPTH` folders) and then viewed as a private
temporary folder of hard links to the blobs (copies where the file system refuses links),
removed when the process ends. What is read from the view is then checked like any run.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from umt.pipeline.errors import ConfigError
from umt.pipeline.run_dir import RunDir

#: ``owner/name`` or ``owner/name@revision`` (the hub's own rules for the two names).
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<revision>[\w./-]{1,100}))?$")
MAX_FILES = 256
MAX_DEPTH = 4


@dataclass(frozen=True)
class ModelSource:
    """A trained model's folder, and the hub id it was resolved from (None for a local folder)."""

    path: Path
    hub_id: str | None = None

    @property
    def name(self) -> str:
        return self.hub_id or str(self.path)


def locate(spec: str | Path) -> ModelSource:
    """The folder of the model ``spec`` names (see the module docstring)."""
    path = Path(spec).expanduser()
    if path.exists():
        return ModelSource(path)
    found = HUB_ID.match(str(spec))
    if found is None:
        return ModelSource(path)  # RunDir.open says what is wrong with it
    return ModelSource(_hub_view(found["repo"], found["revision"]), str(spec))


def open_run(spec: str | Path) -> RunDir:
    """The finished run ``spec`` names (a run directory, an export, or a hub id), opened."""
    return RunDir.open(locate(spec).path)


def _hub_view(repo: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover - a core dependency
        raise ConfigError(f"{repo} looks like a hub id, but huggingface_hub is not installed") from None
    try:
        snapshot = Path(snapshot_download(repo, revision=revision))
    except LocalEntryNotFoundError:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        why = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise ConfigError(
            f"{repo}: no such local folder, and no snapshot of the hub model in the Hugging Face cache "
            f"({why}); download it where the hub is reachable (`hf download {repo}`) or pass a folder"
        ) from None
    except RepositoryNotFoundError:
        raise ConfigError(f"{repo}: no such local folder, and no such model on the hub (or it is private)") from None
    except (HfHubHTTPError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{repo}: cannot fetch the hub model ({first})") from None
    return view_snapshot(snapshot, repo)


def view_snapshot(snapshot: Path, repo: str) -> Path:
    """A private folder holding ``snapshot``'s files as regular files (module docstring)."""
    cache_root = snapshot.resolve().parent.parent  # models--owner--name/ (snapshots/<commit>/..)
    entries = _checked_entries(snapshot, cache_root, repo)
    view = Path(tempfile.mkdtemp(prefix="umt-hub-"))
    atexit.register(shutil.rmtree, view, ignore_errors=True)
    for relative, target in entries:
        destination = view / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(target, destination)
        except OSError:
            shutil.copyfile(target, destination, follow_symlinks=False)
    return view


def _checked_entries(snapshot: Path, cache_root: Path, repo: str) -> list[tuple[Path, Path]]:
    """(path in the snapshot, the regular file it is) for every file; a ConfigError for anything else."""
    out: list[tuple[Path, Path]] = []
    for folder, subfolders, files in os.walk(snapshot):
        here = Path(folder)
        depth = len(here.relative_to(snapshot).parts)
        for name in subfolders:
            if (here / name).is_symlink():
                raise ConfigError(f"{repo}: the snapshot's folder {name!r} is a link; umt reads no linked folders")
        if depth >= MAX_DEPTH and subfolders:
            raise ConfigError(f"{repo}: the snapshot has folders deeper than {MAX_DEPTH}: not a umt model")
        for name in files:
            entry = here / name
            target = entry.resolve() if entry.is_symlink() else entry
            inside = target == cache_root or cache_root in target.parents
            if not inside or not stat.S_ISREG(os.lstat(target).st_mode):
                raise ConfigError(
                    f"{repo}: the snapshot's {entry.relative_to(snapshot)} is not a file of the repository's "
                    "cache (a link out of it, or not a regular file)"
                )
            out.append((entry.relative_to(snapshot), target))
            if len(out) > MAX_FILES:
                raise ConfigError(f"{repo}: the snapshot holds more than {MAX_FILES} files: not a umt model")
    return out
