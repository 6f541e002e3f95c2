"""Reading a feature cache: one image's grid by id, safely from many DataLoader workers.

A cache file may come from anyone, so the reader trusts nothing in it: an HDF5 file of a few KB
can declare 200 million rows (chunks never written read as the fill value), send libhdf5 to read
other files, or hold values that fail deep inside h5py. Before it reads any data, from the
file's metadata alone, :class:`FeatureCache` checks that

- the ``format`` attribute is the text "umt-feature-cache" (str or bytes) and ``format_version``
  an integer no newer than this umt reads;
- ``manifest`` is one UTF-8 text of at most 1 MB holding a JSON object nested at most 32 levels
  deep, whose "dtype" is a storage dtype and whose counts.total, when given, is the row count;
- /ids, /status, /reason and /features are datasets of this file reached by hard links: no soft
  or external link, no virtual dataset, no external raw storage (each makes libhdf5 read other
  files), and no filter but deflate, shuffle, fletcher32 and lzf;
- the manifest records a grid shape (H, W, C) within ``umt.cache.grid``'s bounds;
- /ids and /reason hold variable-length strings and /status uint8 codes (the layout's enum), all
  n of them, and /features is (n, H, W, C) in exactly the manifest's storage dtype;
- no chunk inflates to more than 6.4 MB (16 float32 grids of ResNet-152), since a read decodes
  whole chunks;
- the file has room for n rows: /ids and /reason have 16 bytes of storage per row (one written
  variable-length string), /status one byte, and the file on disk is at least their sum long,
  so what is read next costs no more than the file really holds. /features needs no storage:
  the rows of failed images are never allocated.

Only then does it read the statuses (each one a :class:`Status`), the ids (UTF-8, distinct) and
the reasons (UTF-8): a few bytes per image. Anything wrong, an error of h5py or libhdf5 included,
is a one-line :class:`CacheError` naming the file; so is a chunk :meth:`FeatureCache.get` cannot
decode.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from umt.cache.errors import CacheError
from umt.cache.format import (
    ATTR_FORMAT,
    ATTR_MANIFEST,
    ATTR_VERSION,
    FEATURES,
    FORMAT_NAME,
    FORMAT_VERSION,
    IDS,
    REASON,
    STATUS,
    STORAGE_DTYPES,
    Status,
)
from umt.cache.grid import GridShape, GridShapeError
from umt.cache.manifest import mismatches

if TYPE_CHECKING:  # torch loads on the first get(): opening a cache stays fast
    import torch

DATASETS = (IDS, STATUS, REASON, FEATURES)
#: Values quoted from the file are cut to this many characters: a message stays one short line.
SHOWN_CHARS = 160
#: A real manifest is a few hundred characters; a longer one is not what umt wrote.
MAX_MANIFEST_CHARS = 1 << 20
#: Deeper JSON is refused before anything (json, mismatches) recurses through it.
MAX_MANIFEST_DEPTH = 32
#: Dataset storage of one written variable-length string: length, global heap address, index.
VLEN_BYTES = 16
#: A read inflates whole chunks, so none may hold more than this (16 float32 ResNet-152 grids).
MAX_CHUNK_BYTES = 16 * 7 * 7 * 2048 * np.dtype(np.float32).itemsize
#: Filters h5py applies itself. Others are lossy (scaleoffset, nbit) or a plugin loaded on read.
READABLE_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: "deflate",
    h5py.h5z.FILTER_SHUFFLE: "shuffle",
    h5py.h5z.FILTER_FLETCHER32: "fletcher32",
    h5py.h5z.FILTER_LZF: "lzf",
}
#: What h5py and libhdf5 raise on a file they cannot make sense of (RecursionError included).
LIBRARY_ERRORS = (OSError, KeyError, TypeError, ValueError, RuntimeError)


def _cut(text: str) -> str:
    """``text`` cut in the middle to SHOWN_CHARS, keeping both ends (a path's file name)."""
    if len(text) <= SHOWN_CHARS:
        return text
    half = (SHOWN_CHARS - 3) // 2
    return f"{text[:half]}...{text[-half:]}"


def shown(value: object) -> str:
    """``repr(value)`` for a message, cut to SHOWN_CHARS: values found in a file may be huge."""
    if isinstance(value, np.generic):  # np.int64(1) reads as 1
        value = value.item()
    return _cut(repr(value))


def _summary(error: BaseException) -> str:
    """An error of h5py or libhdf5 as one short line, to end a CacheError with."""
    return _cut(f"{type(error).__name__}: {' '.join(str(error).split())}")


def _damaged(path: Path, problem: str) -> CacheError:
    return CacheError(f"{path} is damaged: {problem}")


def _text(value: object) -> str | None:
    """``value`` as text when it is a str or bytes of UTF-8, else None.

    h5py returns a variable-length string attribute as str, bytes that are not UTF-8 as lone
    surrogates in it, and a fixed-length one as bytes.
    """
    try:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, str):
            value.encode("utf-8")  # raises on lone surrogates
            return value
    except UnicodeError:
        pass
    return None


def _check_format(path: Path, f: h5py.File) -> None:
    fmt = f.attrs.get(ATTR_FORMAT)
    if _text(fmt) != FORMAT_NAME or any(f.get(name, getlink=True) is None for name in DATASETS):
        raise CacheError(
            f"{path} is an HDF5 file but not a umt feature cache "
            f"(format attribute {shown(fmt)}, datasets {shown(sorted(f.keys()))})"
        )


def _check_version(path: Path, f: h5py.File) -> None:
    version = f.attrs.get(ATTR_VERSION, -1)  # absent: left to the checks that follow
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)):
        raise _damaged(path, f"its format_version attribute is {shown(version)}, not an integer")
    if version > FORMAT_VERSION:
        raise CacheError(
            f"{path} has cache format version {version}; this umt reads up to {FORMAT_VERSION} (upgrade umt)"
        )


def _deeper_than(value: dict | list, limit: int) -> bool:
    """Whether the JSON ``value`` nests objects and lists more than ``limit`` levels deep.

    Level by level rather than recursively, so that no depth can exhaust the stack.
    """
    level = [value]
    for _ in range(limit):
        children = (child for item in level for child in (item.values() if isinstance(item, dict) else item))
        level = [child for child in children if isinstance(child, (dict, list))]
        if not level:
            return False
    return True


def _too_deep(path: Path) -> CacheError:
    return _damaged(path, f"its manifest is nested more than {MAX_MANIFEST_DEPTH} levels deep")


def _parse_manifest(path: Path, text: str) -> dict[str, Any]:
    try:
        manifest = json.loads(text)
    except RecursionError:
        raise _too_deep(path) from None
    except ValueError as e:
        raise _damaged(path, f"its manifest is not JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise _damaged(path, f"its manifest is not a JSON object (it is a {type(manifest).__name__})")
    if _deeper_than(manifest, MAX_MANIFEST_DEPTH):
        raise _too_deep(path)
    return manifest


def _read_manifest(path: Path, f: h5py.File) -> dict[str, Any]:
    value = f.attrs.get(ATTR_MANIFEST)
    if value is None:
        raise _damaged(path, "it has no manifest attribute")
    if not isinstance(value, (str, bytes)):
        raise _damaged(path, f"its manifest is not text (it is {type(value).__name__})")
    if len(value) > MAX_MANIFEST_CHARS:
        raise _damaged(path, f"its manifest is longer than {MAX_MANIFEST_CHARS} characters ({len(value)})")
    text = _text(value)
    if text is None:
        raise _damaged(path, "its manifest is not UTF-8 text")
    return _parse_manifest(path, text)


def _storage_dtype(path: Path, manifest: dict[str, Any]) -> str:
    dtype = manifest.get("dtype")
    if dtype not in STORAGE_DTYPES:
        choices = ", ".join(STORAGE_DTYPES)
        raise _damaged(path, f"its manifest names the storage dtype {shown(dtype)}, not one of {choices}")
    return dtype


def _check_layout(path: Path, name: str, plist: h5py.h5p.PropDCID) -> None:
    """Refuse data that libhdf5 would read from other files, or decode with an unknown filter."""
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        raise _damaged(path, f"its /{name} is a virtual dataset (libhdf5 would read other files for it)")
    if plist.get_external_count() > 0:
        raise _damaged(path, f"its /{name} keeps its data in an external file (libhdf5 would read it)")
    for index in range(plist.get_nfilters()):
        code, _, _, label = plist.get_filter(index)
        if code not in READABLE_FILTERS:
            raise _damaged(
                path,
                f"its /{name} is encoded with HDF5 filter {code} ({shown(label.decode('ascii', 'replace'))}); "
                f"only {', '.join(READABLE_FILTERS.values())} are read",
            )


def _dataset(path: Path, f: h5py.File, name: str) -> h5py.Dataset:
    """The dataset ``name`` if libhdf5 reads it from this file alone, with a known filter."""
    link = f.get(name, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        target = shown(f"{link.filename}:{link.path}")
        raise _damaged(path, f"its /{name} is an external link to {target} (a cache holds its own data)")
    if isinstance(link, h5py.SoftLink):
        raise _damaged(path, f"its /{name} is a soft link to {shown(link.path)}, not a dataset")
    dataset = f[name]
    if not isinstance(dataset, h5py.Dataset):
        raise _damaged(path, f"its /{name} is not a dataset")
    _check_layout(path, name, dataset.id.get_create_plist())
    return dataset


def _grid_shape(path: Path, manifest: dict[str, Any]) -> GridShape:
    try:
        return GridShape.from_manifest(manifest)
    except GridShapeError as e:
        raise _damaged(path, str(e)) from None


def _rows(path: Path, datasets: dict[str, h5py.Dataset], grid: GridShape) -> int:
    """n, the row count all four datasets share (a scalar or empty dataspace has none)."""
    shapes = {name: dataset.shape for name, dataset in datasets.items()}
    n = shapes[IDS][0] if shapes[IDS] else None
    expected = {IDS: (n,), STATUS: (n,), REASON: (n,), FEATURES: (n, *grid.stored)}
    if n is None or shapes != expected:
        rows, cols, channels = grid.stored
        raise _damaged(
            path,
            "its datasets have the shapes "
            + ", ".join(f"/{name} {shape}" for name, shape in shapes.items())
            + f"; expected (n,) for /ids, /status and /reason and (n, {rows}, {cols}, {channels}) for /features"
            + " (the manifest's grid)",
        )
    return n


def _check_counts(path: Path, manifest: dict[str, Any], n: int) -> None:
    counts = manifest.get("counts")
    total = counts.get("total", n) if isinstance(counts, dict) else n
    if total != n:
        raise _damaged(path, f"its manifest counts {shown(total)} images but its datasets hold {n}")


def _check_types(path: Path, datasets: dict[str, h5py.Dataset], storage_dtype: str) -> None:
    for name in (IDS, REASON):
        found = datasets[name].dtype
        string = h5py.check_string_dtype(found)
        if string is None or string.length is not None:
            raise _damaged(path, f"its /{name} holds {found} values, not variable-length strings")
    if datasets[STATUS].dtype != np.uint8:  # the uint8 enum compares equal to uint8
        raise _damaged(path, f"its /{STATUS} holds {datasets[STATUS].dtype} values, not uint8 codes")
    found = datasets[FEATURES].dtype
    if found != np.dtype(storage_dtype):
        raise _damaged(path, f"its /{FEATURES} holds {found} values but its manifest says {storage_dtype}")


def _element_bytes(dataset: h5py.Dataset) -> int:
    """Bytes of storage one element takes (a string: its reference to the heap holding it)."""
    return VLEN_BYTES if h5py.check_string_dtype(dataset.dtype) else dataset.dtype.itemsize


def _check_chunks(path: Path, name: str, dataset: h5py.Dataset) -> None:
    if dataset.chunks is None:
        return
    size = math.prod(dataset.chunks) * _element_bytes(dataset)
    if size > MAX_CHUNK_BYTES:
        raise _damaged(
            path,
            f"its /{name} is stored in chunks of shape {dataset.chunks} ({size / 1e6:.1f} MB each), and a read "
            f"inflates whole chunks: at most {MAX_CHUNK_BYTES / 1e6:.1f} MB are allowed",
        )


def _check_storage(path: Path, datasets: dict[str, h5py.Dataset], n: int) -> None:
    """Refuse a row count the file has no room for, before the n rows are read into memory."""
    needed = {name: n * _element_bytes(datasets[name]) for name in (IDS, STATUS, REASON)}
    for name, need in needed.items():
        have = datasets[name].id.get_storage_size()
        if have < need:
            raise _damaged(
                path, f"it declares {n} images but its /{name} has {have} bytes of storage, not the {need} needed"
            )
    size = os.path.getsize(path)
    if size < sum(needed.values()):
        raise _damaged(
            path,
            f"it declares {n} images but is {size} bytes long, fewer than the {sum(needed.values())} "
            "their ids, statuses and reasons take",
        )


def _read_status(path: Path, dataset: h5py.Dataset) -> np.ndarray:
    status = np.asarray(dataset[:], dtype=np.uint8)  # (n,) codes
    known = np.isin(status, [s.value for s in Status])
    if not known.all():
        row = int(np.argmin(known))
        names = ", ".join(f"{s.value} ({s.label})" for s in Status)
        raise _damaged(path, f"its /{STATUS} holds {status[row]} at row {row}, not one of {names}")
    return status


def _read_text(path: Path, dataset: h5py.Dataset, name: str) -> list[str]:
    try:
        return list(dataset.asstr("utf-8")[:])
    except UnicodeDecodeError as e:
        raise _damaged(path, f"its /{name} holds a string that is not UTF-8 ({e.reason} at its byte {e.start})") from e


def _rows_by_id(path: Path, ids: list[str]) -> dict[str, int]:
    rows = {image_id: row for row, image_id in enumerate(ids)}
    if len(rows) != len(ids):
        image_id, times = Counter(ids).most_common(1)[0]
        raise _damaged(path, f"its ids are not distinct: {shown(image_id)} appears {times} times")
    return rows


def is_umt_cache(path: Path) -> bool:
    """Whether ``path`` is a regular HDF5 file stamped as a umt cache (readable or damaged): the
    only kind of existing file ``--overwrite`` may replace, so a mistyped ``--out`` pointing at a
    dataset file or a document is refused instead of deleted."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            stamp = f.attrs.get(ATTR_FORMAT)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _text(stamp) == FORMAT_NAME


class UnknownImageError(CacheError, KeyError):
    """An id the cache holds no row for (neither features nor a failure status)."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class FeatureCache:
    """Read access to one cache file.

    The ids, statuses and reasons are read once into memory (a few bytes per image), after the
    checks of the module docstring; the grids stay on disk and :meth:`get` reads one image's
    chunk. The HDF5 handle is opened lazily and remembered per process id, because an h5py
    handle must not cross a ``fork``: each DataLoader worker opens its own on first use, and
    pickling drops the handle.

    ``expect`` names manifest values the caller relies on (nested dicts compare only the keys
    given); any difference raises :class:`CacheError` naming the key, the expected and the found
    value.
    """

    manifest: dict[str, Any]
    ids: list[str]
    dtype: str  # the storage dtype of /features, "float16" or "float32"
    shape: GridShape  # one image's grid, as the manifest records it

    def __init__(self, path: Path | str, expect: dict[str, Any] | None = None):
        self.path = Path(path)
        self._file: h5py.File | None = None
        self._file_pid: int | None = None
        with self._open() as f:
            try:
                self._load(f)
            except CacheError:
                raise
            except LIBRARY_ERRORS as e:
                raise _damaged(self.path, f"h5py cannot read it ({_summary(e)})") from e
        self._row = _rows_by_id(self.path, self.ids)
        if expect:
            problems = mismatches(self.manifest, expect)
            if problems:
                raise CacheError(
                    f"{self.path} was built with other settings than expected: "
                    + "; ".join(problems)
                    + ". Extract the images again with matching options (umt extract-images)."
                )

    def _load(self, f: h5py.File) -> None:
        """Check the file from its metadata (see the module docstring), then read its index."""
        _check_format(self.path, f)
        _check_version(self.path, f)
        self.manifest = _read_manifest(self.path, f)
        self.shape = _grid_shape(self.path, self.manifest)
        datasets = {name: _dataset(self.path, f, name) for name in DATASETS}
        n = _rows(self.path, datasets, self.shape)
        _check_counts(self.path, self.manifest, n)
        _check_types(self.path, datasets, _storage_dtype(self.path, self.manifest))
        for name, dataset in datasets.items():
            _check_chunks(self.path, name, dataset)
        _check_storage(self.path, datasets, n)
        self._status = _read_status(self.path, datasets[STATUS])
        self.ids = _read_text(self.path, datasets[IDS], IDS)
        self._reasons = _read_text(self.path, datasets[REASON], REASON)
        self.dtype = str(datasets[FEATURES].dtype)

    def _open(self) -> h5py.File:
        if not self.path.is_file():
            raise CacheError(f"feature cache {self.path} does not exist (create it with umt extract-images)")
        try:
            return h5py.File(self.path, "r")
        except OSError as e:
            raise CacheError(f"{self.path} is not a umt feature cache (not a readable HDF5 file: {e})") from e

    def _features(self) -> h5py.Dataset:
        pid = os.getpid()
        if self._file is None or self._file_pid != pid:
            # A handle inherited through fork belongs to the parent: leave it alone, open our own.
            self._file = self._open()
            self._file_pid = pid
        return self._file[FEATURES]

    def _row_of(self, image_id: str) -> int:
        try:
            return self._row[image_id]
        except KeyError:
            raise UnknownImageError(
                f"image id {image_id!r} is not in the feature cache {self.path} ({len(self.ids)} ids); "
                "was the cache extracted for this dataset?"
            ) from None

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._row

    def __len__(self) -> int:
        return len(self.ids)

    def status(self, image_id: str) -> str:
        """``"ok"``, ``"missing"`` or ``"unreadable"``."""
        return Status(self._status[self._row_of(image_id)]).label

    def reason(self, image_id: str) -> str:
        """Why the image has no grid ("" when its status is ok)."""
        return self._reasons[self._row_of(image_id)]

    def get(self, image_id: str) -> tuple[torch.Tensor, bool]:
        """The image's (blocks, C) float32 grid and True, or zeros and False when it has none."""
        import torch

        row = self._row_of(image_id)
        if self._status[row] != Status.OK:
            return torch.zeros(self.shape.sequence), False
        grid = self._stored(row, f"the grid of image {image_id!r}")  # (H, W, C) in the storage dtype
        return torch.from_numpy(grid.astype(np.float32).reshape(self.shape.sequence)), True  # (H * W, C)

    def stored_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of ``/features`` as stored, (n, H, W, C): for bulk copies."""
        return self._stored(slice(start, stop), f"rows {start}..{stop} of /{FEATURES}")

    def _stored(self, rows: int | slice, what: str) -> np.ndarray:
        """``/features[rows]`` as stored; a chunk libhdf5 cannot decode is a CacheError naming ``what``."""
        try:
            return self._features()[rows]
        except OSError as e:
            raise _damaged(self.path, f"{what} cannot be read ({_summary(e)})") from e

    def counts(self) -> dict[str, int]:
        """Number of images per status label, every label present."""
        found = Counter(int(code) for code in self._status)
        return {s.label: found.get(s.value, 0) for s in Status}

    def failures(self) -> list[tuple[str, str, str]]:
        """(id, status, reason) of every image whose status is not ok, in id order."""
        rows = np.flatnonzero(self._status != Status.OK)
        return [(self.ids[r], Status(self._status[r]).label, self._reasons[r]) for r in rows]

    def close(self) -> None:
        if self._file is not None and self._file_pid == os.getpid():
            self._file.close()
        self._file = None
        self._file_pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_file_pid"] = None
        return state

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
