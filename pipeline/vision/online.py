"""Grids for new images at prediction time, computed exactly as the run's feature cache was.

A run records the pinned settings of the cache it trained on (backbone, weights, preprocessing,
storage dtype: ``config.json``'s ``features.manifest``). :class:`ImageFeaturizer` checks that
this version of umt computes the same thing before any image is read, then builds the same
frozen backbone (``vision.backbones``: any registered one, the run's), decodes with the same
preprocessing (``vision.decode``, with the backbone's size, filter, mean and std),
rounds through the same storage dtype and keeps every grid on disk under the sha256 of the
image file's bytes, so tagging the same image again (even under another name) costs a file
read, and a call whose images are all known never builds the backbone.

Image files are untrusted (they come from users' posts), so each one is checked from the cheapest
test to the dearest, and a refusal costs that image only (``Featurized(None, reason)``):

1. stat: a regular file (a FIFO would block, a device never end) of at most ``max_image_bytes``
   (default 32 MiB, far above any photo Twitter serves); then the file is read once, into memory;
2. the header: one of the accepted formats, at most ``decode.MAX_PIXELS`` pixels;
3. the sha256 of those bytes, the grid's key;
4. unless the grid is on disk, the decode of the same bytes (never a second read of the file,
   which might have changed in between and poison the cache) and the backbone.

The disk cache (``cache_dir``, default :func:`default_cache_dir`):

- Layout: ``<cache_dir>/<settings digest>/<sha[:2]>/<sha>.npy``, one array (rows, cols, C) per image
  in the storage dtype, written atomically; the settings digest keeps grids of different
  backbones, weights or dtypes apart.
- Privacy: the root, the digest folder and the sub-folders are created with mode 0700. An
  existing root must be the user's own (another user could read or poison the grids in theirs):
  one of another user, or a shared sticky folder such as /tmp, is refused; one of ours that the group
  or others can access is chmod-ed to 0700, which also closes the 0755 sub-folders of earlier
  versions. A root that cannot be used (of another user, below a regular file, read-only) is a
  one-line ConfigError when the featurizer is built, naming the option that chooses another
  folder (``cache_option``: ``--image-cache DIR`` by default).
- Reads trust nothing: a cached file must be a regular file of ours, of the size ``np.save``
  writes for a grid (within :data:`NPY_SIZE_SLACK` bytes of header), load without pickle and
  hold exactly the shape and dtype expected; any other file is deleted and its grid computed
  again (and counted in :attr:`ImageFeaturizer.computed`).
- Size: at most ``max_cache_bytes`` (default 2 GiB, about 10,000 float16 grids; 0 for no cap)
  over every digest folder under the root. After a call that wrote new grids, one walk of the
  cache deletes grids least recently used first (by modification time, which every read bumps)
  until the total fits; the grids of the call itself stay in memory for it. Only files named as
  in the layout are counted or deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umt.cache.durable import MIB, UnsafeFile, atomic_write_bytes, open_regular, read_open, read_regular
from umt.cache.format import STORAGE_DTYPES, Status
from umt.cache.grid import GridShape
from umt.pipeline.errors import ConfigError
from umt.pipeline.vision.backbones import Backbone, recorded_backbone
from umt.pipeline.vision.decode import decode_bytes, header_problem

DEFAULT_CACHE_DIR = Path("~/.cache/umt/predict-features")
CACHE_ENV = "UMT_CACHE_DIR"
#: What a run trained before the dtype was recorded read: the extraction default.
DEFAULT_DTYPE = "float16"
DEFAULT_MAX_IMAGE_BYTES = 32 * MIB
DEFAULT_MAX_CACHE_BYTES = 2048 * MIB
#: The option that chooses the cache folder, named when the one given cannot be used.
CACHE_OPTION = "--image-cache DIR"
WEIGHTS_OPTION = "--weights PATH"
PRIVATE_MODE = 0o700
OPEN_TO_OTHERS = 0o077  # group and other permission bits
DIGEST_CHARS = 16  # of the settings digest naming a folder
DIGEST_NAME = re.compile(f"[0-9a-f]{{{DIGEST_CHARS}}}")
GRID_NAME = re.compile(r"[0-9a-f]{64}\.npy")  # <sha256>.npy
#: How far a cached file's size may stray from the one ``np.save`` writes here (another numpy's header).
NPY_SIZE_SLACK = 256


def _npy_bytes(grid: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, grid, allow_pickle=False)
    return buffer.getvalue()


def _discard(path: Path) -> None:
    """Delete a cache file; one that is already gone, or cannot go, is left to the next writer."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _make_private(folder: Path) -> None:
    """Create ``folder`` with mode 0700 if it is absent (its parent must exist)."""
    folder.mkdir(mode=PRIVATE_MODE, exist_ok=True)


def _check_ours(folder: Path, refuse: Callable[[str], ConfigError]) -> None:
    """``folder`` must be the user's own and not a shared sticky one; close it to others if open."""
    info = folder.stat()
    if info.st_uid != os.getuid():
        raise refuse(f"it belongs to another user (uid {info.st_uid})")
    if info.st_mode & stat.S_ISVTX:  # chmod-ing /tmp to 0700 would break every other program
        raise refuse("it is a shared folder (sticky bit, like /tmp)")
    if stat.S_IMODE(info.st_mode) & OPEN_TO_OTHERS:
        os.chmod(folder, PRIVATE_MODE)


def _prepare_cache(root: Path, folder: Path, option: str) -> None:
    """Create or check the cache root and its digest ``folder`` (see the module docstring)."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"cannot use the image cache folder {root}: {why}; pass {option}")

    try:
        root.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
        _check_ours(root, refuse)
        _make_private(folder)
        _check_ours(folder, refuse)
    except OSError as e:
        raise refuse(e.strerror or str(e)) from e
    if not os.access(folder, os.W_OK | os.X_OK):
        raise refuse("it is not writable")


def _entries(folder: Path, want_dirs: bool) -> list[os.DirEntry]:
    """The sub-folders (or files) of ``folder``, never through a link; [] if it went meanwhile."""
    try:
        with os.scandir(folder) as scan:
            if want_dirs:
                return [e for e in scan if e.is_dir(follow_symlinks=False)]
            return [e for e in scan if e.is_file(follow_symlinks=False)]
    except OSError:
        return []


def _cached_grids(root: Path) -> Iterator[tuple[int, int, Path]]:
    """(mtime in ns, size, path) of every grid file under ``root``.

    Only names of the layout count (hex digest folder, hex sub-folder, ``<sha256>.npy`` in the
    sub-folder its name starts with), so that neither a writer's temporary file nor anything a
    user keeps in a folder passed as the cache is ever evicted.
    """
    for digest in _entries(root, want_dirs=True):
        if not DIGEST_NAME.fullmatch(digest.name):
            continue
        for shard in _entries(Path(digest.path), want_dirs=True):
            for entry in _entries(Path(shard.path), want_dirs=False):
                if not GRID_NAME.fullmatch(entry.name) or not entry.name.startswith(shard.name):
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:  # evicted by another process meanwhile
                    continue
                yield info.st_mtime_ns, info.st_size, Path(entry.path)


def default_cache_dir() -> Path:
    """``$UMT_CACHE_DIR/predict-features`` if set, else ``~/.cache/umt/predict-features``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root) / "predict-features" if root else DEFAULT_CACHE_DIR.expanduser()


def _weights_spec(backbone: Backbone, recorded: Any, weights: str | None, option: str) -> str:
    """The weights that rebuild the recorded backbone, or a ConfigError saying why not (``option``
    names the setting that passes a weights file or folder: ``--weights PATH``, ``weights=``)."""
    if not isinstance(recorded, dict):
        raise ConfigError(f"the run's features record no backbone weights it could name ({recorded!r:.80})")
    if weights is not None:
        given = backbone.weights_identity(weights)
        if given != recorded:
            raise ConfigError(
                f"the weights {weights} are not the backbone weights ({backbone.name}) the run's features were "
                f"computed with ({json.dumps(recorded)}); the model would see features it was never trained on"
            )
        return weights
    return backbone.rebuild_spec(recorded, option)


def run_backbone(manifest: dict[str, Any]) -> tuple[Backbone, GridShape]:
    """The registered backbone a run's pinned features ``manifest`` names and its grid shape,
    checked against what this umt computes for it (shape, preprocessing)."""
    backbone = recorded_backbone(manifest, "the run's features")
    if manifest.get("preprocessing") != backbone.preprocessing:
        raise ConfigError(
            "the run's features were computed with other image preprocessing than this version of umt "
            "uses; pass a cache extracted by the run's version (--features FILE, or features= in Python)"
        )
    return backbone, backbone.grid


@dataclass
class Featurized:
    """The outcome for one image file: its content key, or why it has no grid."""

    key: str | None
    reason: str = ""


class ImageFeaturizer:
    """Featurise image files as the run's cache did; the grids are served by :meth:`features`."""

    def __init__(
        self,
        recorded: dict[str, Any],
        weights: str | None = None,
        cache_dir: Path | None = None,
        device: torch.device | None = None,
        batch_size: int = 16,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES,
        cache_option: str = CACHE_OPTION,
        weights_option: str = WEIGHTS_OPTION,
    ):
        manifest = recorded.get("manifest", {})
        self.backbone, self.shape = run_backbone(manifest)
        self.weights = _weights_spec(self.backbone, manifest.get("weights", {}), weights, weights_option)
        if manifest.get("dtype", DEFAULT_DTYPE) not in STORAGE_DTYPES:
            raise ConfigError(
                f"the run's features record the storage dtype {manifest.get('dtype')!r}, not one of "
                f"{', '.join(STORAGE_DTYPES)}"
            )
        self.dtype = np.dtype(manifest.get("dtype", DEFAULT_DTYPE))
        settings = json.dumps({k: manifest.get(k) for k in ("backbone", "weights", "preprocessing")}, sort_keys=True)
        settings += str(self.dtype)
        self.root = cache_dir or default_cache_dir()
        self.folder = self.root / hashlib.sha256(settings.encode()).hexdigest()[:DIGEST_CHARS]
        _prepare_cache(self.root, self.folder, cache_option)
        self.grid_file_bytes = len(_npy_bytes(np.zeros(self.shape.stored, self.dtype)))  # what every valid file holds
        self.max_image_bytes = max_image_bytes
        self.max_cache_bytes = max_cache_bytes
        self.device = device or torch.device("cpu")
        self.batch_size = batch_size
        self._extractor = None
        self.grids: dict[str, np.ndarray] = {}  # key -> (rows, cols, C), of the last featurize call only
        self.computed = 0  # images run through the backbone by this featurizer (the rest came from disk)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def _forward(self, pixels: list[np.ndarray]) -> np.ndarray:
        if self._extractor is None:
            self._extractor = self.backbone.build(self.weights).to(self.device)
        batch = torch.from_numpy(np.stack(pixels)).to(self.device)  # (n, H_in, W_in, 3) uint8
        with torch.inference_mode():
            grids = self._extractor(batch).float().cpu().numpy()  # (n, rows, cols, C)
        return grids.astype(self.dtype)

    def featurize(self, paths: list[Path]) -> list[Featurized]:
        """One outcome per path; grids of readable images are then in :attr:`grids` (batched,
        each distinct image computed once, read from disk when an earlier call computed it). Only
        this call's grids stay in memory, so a stream of calls runs in constant memory."""
        return self._featurize([(str(path), *self._admit(path)) for path in paths])

    def featurize_bytes(self, images: list[tuple[str, bytes]]) -> list[Featurized]:
        """:meth:`featurize` for images received as bytes (``umt serve``): (a name for messages, the
        file's bytes) each, checked as a file is (size limit, image header) before decoding."""
        return self._featurize([(name, *self._admit_bytes(name, data)) for name, data in images])

    def _featurize(self, admitted: list[tuple[str, Featurized, bytes]]) -> list[Featurized]:
        self.grids = {}
        out: list[Featurized] = []
        failed: dict[str, str] = {}
        batch: dict[str, np.ndarray] = {}  # key -> (H_in, W_in, 3) uint8 pixels waiting for the backbone
        computed_before = self.computed
        for path, outcome, data in admitted:
            out.append(outcome)
            key = outcome.key
            if key is None or key in self.grids or key in batch or key in failed:
                continue
            grid = self._load(key)
            if grid is not None:
                self.grids[key] = grid
                continue
            decoded = decode_bytes(data, self.backbone.resize)  # the very bytes hashed: the key names what was decoded
            if decoded.status is not Status.OK:
                failed[key] = f"{path}: {decoded.reason}"
                continue
            batch[key] = decoded.pixels
            if len(batch) == self.batch_size:
                self._flush(batch)
        self._flush(batch)
        if self.computed > computed_before:
            self._evict()
        return [Featurized(None, failed[o.key]) if o.key in failed else o for o in out]

    def _admit(self, path: Path) -> tuple[Featurized, bytes]:
        """The outcome of the checks before decoding (module docstring, steps 1-3) and the file's bytes."""
        try:  # an image may be a link (its folder was checked to hold it): follow it
            data = read_regular(path, self.max_image_bytes, follow_links=True, what="an image")
        except UnsafeFile as e:
            return Featurized(None, f"{path}: {e}"), b""
        except OSError as e:
            return Featurized(None, f"cannot read {path}: {e.strerror}"), b""
        return self._admit_bytes(str(path), data)

    def _admit_bytes(self, name: str, data: bytes) -> tuple[Featurized, bytes]:
        if len(data) > self.max_image_bytes:
            return Featurized(None, f"{name}: larger than {self.max_image_bytes} bytes"), b""
        problem = header_problem(data)
        if problem:
            return Featurized(None, f"{name}: {problem}"), b""
        return Featurized(hashlib.sha256(data).hexdigest()), data

    def _load(self, key: str) -> np.ndarray | None:
        """The cached grid of ``key`` if there is a valid one (bumping its mtime: recently used);
        an invalid file is deleted, so that the grid is computed and written again."""
        path = self._path(key)
        try:  # umt writes no links here: one is planted, as is a file of another user
            fd = open_regular(path)
        except FileNotFoundError:
            return None
        except OSError:
            _discard(path)
            return None
        try:
            info = os.fstat(fd)
            data = read_open(fd, self.grid_file_bytes + NPY_SIZE_SLACK, "a cached grid")
        except OSError:
            data = None
        finally:
            os.close(fd)
        grid = None if data is None else self._valid_grid(data, info)
        if grid is None:
            _discard(path)
            return None
        try:
            os.utime(path)
        except OSError:  # evicted by another process meanwhile: the grid read is still good
            pass
        return grid

    def _valid_grid(self, data: bytes, info: os.stat_result) -> np.ndarray | None:
        """The (rows, cols, C) grid in a cache file's ``data``, or None if the file cannot be trusted."""
        if info.st_uid != os.getuid() or abs(len(data) - self.grid_file_bytes) > NPY_SIZE_SLACK:
            return None
        try:
            grid = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception:  # untrusted bytes: whatever numpy makes of them, the file is not a grid
            return None
        if not isinstance(grid, np.ndarray) or grid.shape != self.shape.stored or grid.dtype != self.dtype:
            return None
        return grid

    def _flush(self, batch: dict[str, np.ndarray]) -> None:
        """Run the backbone over the waiting pixels, keep and store their grids, empty ``batch``."""
        if not batch:
            return
        _make_private(self.folder)  # again: someone may have emptied the cache while we ran
        for key, grid in zip(batch, self._forward(list(batch.values())), strict=True):
            path = self._path(key)
            _make_private(path.parent)
            atomic_write_bytes(path, _npy_bytes(grid))
            self.grids[key] = grid
            self.computed += 1
        batch.clear()

    def _evict(self) -> None:
        """Delete the least recently used grids until the cache fits ``max_cache_bytes`` (0: no cap)."""
        if not self.max_cache_bytes:
            return
        files = sorted(_cached_grids(self.root))  # oldest first
        total = sum(size for _, size, _ in files)
        for _, size, path in files:
            if total <= self.max_cache_bytes:
                break
            _discard(path)
            total -= size

    def features(self) -> GridTable:
        return GridTable(self.grids, self.shape)


class GridTable:
    """Grids held in memory (each ``shape.stored``), read through the feature-cache interface the datasets use."""

    def __init__(self, grids: dict[str, np.ndarray], shape: GridShape):
        self.grids = grids
        self.shape = shape
        self.manifest: dict[str, Any] = {}

    def __contains__(self, key: object) -> bool:
        return key in self.grids

    def status(self, key: str) -> str:
        return Status.OK.label if key in self.grids else Status.MISSING.label

    def get(self, key: str) -> tuple[torch.Tensor, bool]:
        grid = self.grids.get(key)
        if grid is None:
            return torch.zeros(self.shape.sequence), False
        return torch.from_numpy(grid.astype(np.float32).reshape(self.shape.sequence)), True  # (blocks, C)
