"""Crafted cache files: the reader and ``cache merge`` refuse them with one-line CacheErrors.

A cache may come from anyone, so every way a small HDF5 file can make the reader read a lot,
read other files, or fail with a raw ValueError/KeyError/OSError is tried here. Each file is
built directly with h5py (a few KB), usually by editing a real cache written by CacheWriter.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from umt.cache.errors import CacheError
from umt.cache.format import FORMAT_NAME, STATUS_ENUM, STRING, CacheWriter, Status
from umt.cache.grid import GridShape
from umt.cache.manifest import dumps, ids_digest
from umt.cache.merge import merge_shards
from umt.cache.reader import FeatureCache

SHAPE = GridShape(7, 7, 2048)
GRID_SHAPE = SHAPE.stored
DECLARED_ROWS = 200_000_000  # what a 6.5 KB file can claim to hold
OK, MISSING, UNREADABLE = Status.OK, Status.MISSING, Status.UNREADABLE


def _manifest(ids: list[str], dtype: str = "float16", **extra) -> dict:
    return {
        "format_version": 1,
        "backbone": "resnet152",
        "grid": [7, 7],
        "channels": 2048,
        "dtype": dtype,
        "plan": {"ids_sha256": ids_digest(ids), "total": len(ids), "chunk_size": 2},
        **extra,
    }


def write_cache(path: Path, ids: list[str], status: list[Status], dtype: str = "float16", **extra) -> np.ndarray:
    """A real cache with random grids (zeros where not ok); returns the (n, 7, 7, 2048) grids."""
    grids = np.random.default_rng(0).standard_normal((len(ids), *GRID_SHAPE)).astype(dtype)
    codes = np.array([int(s) for s in status], dtype=np.uint8)
    grids[codes != OK] = 0
    reasons = ["" if s is OK else f"{s.label}: test" for s in status]
    with CacheWriter(path, path.with_name(path.name + ".tmp"), len(ids), dtype, SHAPE) as writer:
        writer.append(ids, codes, reasons, grids[codes == OK])
        writer.finish(dumps(_manifest(ids, dtype, **extra)))
    return grids


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    path = tmp_path / "crafted.h5"
    write_cache(path, ["a", "b", "c", "d"], [OK, MISSING, OK, UNREADABLE])
    return path


def replace(path: Path, name: str, **dataset) -> None:
    """Swap the dataset ``name`` of the cache ``path`` for ``h5py.create_dataset(name, **dataset)``."""
    with h5py.File(path, "a") as f:
        del f[name]
        f.create_dataset(name, **dataset)


def set_attribute(path: Path, name: str, value: object) -> None:
    with h5py.File(path, "a") as f:
        f.attrs[name] = value


@contextlib.contextmanager
def refused(path: Path, what: str) -> Iterator[None]:
    """The block raises a one-line CacheError that starts with ``path`` and matches ``what``."""
    with pytest.raises(CacheError) as raised:
        yield
    message = str(raised.value)
    assert message.startswith(f"{path} ") and "\n" not in message, message
    assert re.search(what, message), message


@pytest.mark.timeout(20)
def test_rows_declared_without_storage_are_refused_before_any_read(tmp_path: Path):
    path = tmp_path / "huge.h5"
    with h5py.File(path, "w") as f:  # chunked and never written: no chunk is allocated
        f.attrs.update(format=FORMAT_NAME, format_version=1, manifest=dumps(_manifest([])))
        f.create_dataset("ids", shape=(DECLARED_ROWS,), dtype=STRING, chunks=(4096,))
        f.create_dataset("status", shape=(DECLARED_ROWS,), dtype=STATUS_ENUM, chunks=(4096,))
        f.create_dataset("reason", shape=(DECLARED_ROWS,), dtype=STRING, chunks=(4096,))
        f.create_dataset("features", shape=(DECLARED_ROWS, *GRID_SHAPE), dtype="float16", chunks=(1, *GRID_SHAPE))
    assert path.stat().st_size < 10_000
    with refused(path, r"declares 200000000 images but its /ids has 0 bytes of storage"):
        FeatureCache(path)


def test_links_to_other_files_are_refused(cache: Path, tmp_path: Path):
    other = tmp_path / "other.h5"
    write_cache(other, ["a", "b", "c", "d"], [OK] * 4)
    with h5py.File(cache, "a") as f:
        del f["ids"]
        f["ids"] = h5py.ExternalLink(str(other), "ids")
        f["status_copy"] = f["status"]
        del f["status"]
        f["status"] = h5py.SoftLink("/status_copy")
    with refused(cache, r"/ids is an external link to .*other\.h5"):
        FeatureCache(cache)
    with h5py.File(cache, "a") as f:
        del f["ids"]
        f["ids"] = np.array(["a", "b", "c", "d"], dtype=STRING)
    with refused(cache, r"/status is a soft link to '/status_copy'"):
        FeatureCache(cache)


def test_features_kept_in_an_external_file_are_refused(cache: Path, tmp_path: Path):
    raw = tmp_path / "raw.bin"
    raw.write_bytes(bytes(64))
    replace(cache, "features", shape=(4, *GRID_SHAPE), dtype="float16", external=[(str(raw), 0, h5py.h5f.UNLIMITED)])
    with refused(cache, r"/features keeps its data in an external file"):
        FeatureCache(cache)


def test_virtual_datasets_are_refused(cache: Path, tmp_path: Path):
    other = tmp_path / "other.h5"
    write_cache(other, ["a", "b", "c", "d"], [OK] * 4)
    layout = h5py.VirtualLayout(shape=(4,), dtype=STRING)
    layout[:] = h5py.VirtualSource(str(other), "ids", shape=(4,))
    with h5py.File(cache, "a") as f:
        del f["ids"]
        f.create_virtual_dataset("ids", layout)
    with refused(cache, r"/ids is a virtual dataset"):
        FeatureCache(cache)


def test_other_filters_and_whole_file_chunks_are_refused(tmp_path: Path):
    lossy = tmp_path / "lossy.h5"
    write_cache(lossy, ["a", "b"], [OK, OK], dtype="float32")
    replace(lossy, "features", shape=(2, *GRID_SHAPE), dtype="float32", chunks=(1, *GRID_SHAPE), scaleoffset=2)
    with refused(lossy, r"/features is encoded with HDF5 filter 6 \('scaleoffset'\)"):
        FeatureCache(lossy)
    many = tmp_path / "many.h5"
    write_cache(many, [f"i{k:02d}" for k in range(20)], [MISSING] * 20, dtype="float32")
    replace(many, "features", shape=(20, *GRID_SHAPE), dtype="float32", chunks=(20, *GRID_SHAPE), compression="gzip")
    with refused(many, r"/features is stored in chunks of shape \(20, 7, 7, 2048\)"):
        FeatureCache(many)


@pytest.mark.parametrize("version", ["x", np.array([1, 2]), np.bytes_(b"\xff")], ids=["text", "array", "bytes"])
def test_a_version_that_is_not_an_integer_is_refused(cache: Path, version: object):
    set_attribute(cache, "format_version", version)
    with refused(cache, r"its format_version attribute is .*, not an integer"):
        FeatureCache(cache)


def test_a_format_attribute_that_is_an_array_is_not_a_cache(cache: Path):
    set_attribute(cache, "format", np.array([1, 2]))
    with refused(cache, r"is an HDF5 file but not a umt feature cache \(format attribute array\(\[1, 2\]\)"):
        FeatureCache(cache)


@pytest.mark.parametrize(
    ("manifest", "what"),
    [
        (np.bytes_(b'{"dtype": "\xff"}'), r"its manifest is not UTF-8 text"),
        (np.void(b"{}"), r"its manifest is not text"),
        ("[1, 2]", r"its manifest is not a JSON object \(it is a list\)"),
        ("[" * 100_000, r"its manifest is nested more than 32 levels deep"),
        ('{"a": ' * 40 + "1" + "}" * 40, r"its manifest is nested more than 32 levels deep"),
        ('{"pad": "' + "x" * 2_000_000 + '"}', r"its manifest is longer than 1048576 characters"),
    ],
    ids=["not-utf8", "opaque", "json-list", "deep-brackets", "deep-objects", "huge"],
)
def test_a_manifest_that_is_not_a_small_json_object_is_refused(cache: Path, manifest: object, what: str):
    set_attribute(cache, "manifest", manifest)
    with refused(cache, what):
        FeatureCache(cache)


def test_a_status_outside_the_enum_is_refused(cache: Path):
    replace(cache, "status", data=np.array([0, 7, 0, 2], dtype=np.uint8))
    with refused(cache, r"its /status holds 7 at row 1, not one of 0 \(ok\), 1 \(missing\), 2 \(unreadable\)"):
        FeatureCache(cache)


@pytest.mark.parametrize("dtype", ["int64", "float64"])
def test_features_of_another_dtype_are_refused(cache: Path, dtype: str):
    replace(cache, "features", shape=(4, *GRID_SHAPE), dtype=dtype, chunks=(1, *GRID_SHAPE))
    with refused(cache, rf"its /features holds {dtype} values but its manifest says float16"):
        FeatureCache(cache)


def test_features_must_have_the_manifest_storage_dtype(cache: Path):
    set_attribute(cache, "manifest", dumps(_manifest(["a", "b", "c", "d"], dtype="float32")))
    with refused(cache, r"its /features holds float16 values but its manifest says float32"):
        FeatureCache(cache)
    set_attribute(cache, "manifest", dumps(_manifest(["a", "b", "c", "d"], dtype="int8")))
    with refused(cache, r"its manifest names the storage dtype 'int8', not one of float16, float32"):
        FeatureCache(cache)


def test_counts_total_must_match_the_rows(cache: Path):
    set_attribute(cache, "manifest", dumps(_manifest(["a", "b", "c", "d"], counts={"total": 5})))
    with refused(cache, r"its manifest counts 5 images but its datasets hold 4"):
        FeatureCache(cache)


def test_ids_that_repeat_are_refused(tmp_path: Path):
    path = tmp_path / "twice.h5"
    write_cache(path, ["a", "b", "a"], [OK, OK, MISSING])
    with refused(path, r"its ids are not distinct: 'a' appears 2 times"):
        FeatureCache(path)


@pytest.mark.parametrize("name", ["ids", "reason"])
def test_text_that_is_not_utf8_is_refused(cache: Path, name: str):
    replace(cache, name, data=[b"\xff\xfe", b"b", b"c", b"d"], dtype=STRING)
    with refused(cache, rf"its /{name} holds a string that is not UTF-8"):
        FeatureCache(cache)


def test_a_grid_that_cannot_be_decompressed_is_a_cache_error(cache: Path):
    grids = np.ones((4, *GRID_SHAPE), np.float16)  # (4, 7, 7, 2048)
    replace(cache, "features", data=grids, chunks=(1, *GRID_SHAPE), compression="gzip")
    with h5py.File(cache, "r") as f:
        chunk = f["features"].id.get_chunk_info(0)
    with open(cache, "r+b") as fh:  # overwrite image a's compressed chunk with zeros
        fh.seek(chunk.byte_offset)
        fh.write(bytes(chunk.size))
    with FeatureCache(cache) as features, refused(cache, r"the grid of image 'a' cannot be read"):
        features.get("a")


def _shard(path: Path, ids: list[str], all_ids: list[str], **extra) -> Path:
    write_cache(path, ids, [OK] * len(ids), plan={"ids_sha256": ids_digest(all_ids), "total": len(all_ids)}, **extra)
    return path


def test_merge_refuses_a_shard_whose_index_is_not_an_integer(tmp_path: Path):
    one = _shard(tmp_path / "s1.h5", ["a"], ["a", "b"], shard={"index": "x", "count": 2})
    two = _shard(tmp_path / "s2.h5", ["b"], ["a", "b"], shard={"index": 2, "count": 2})
    with refused(one, r"its manifest's shard is \{'count': 2, 'index': 'x'\}, not .*1 <= K <= N"):
        merge_shards(tmp_path / "out.h5", [one, two])
    assert not (tmp_path / "out.h5").exists()


def test_merge_refuses_a_shard_without_a_plan_or_with_a_plan_that_is_not_an_object(tmp_path: Path):
    lost = _shard(tmp_path / "noplan.h5", ["a"], ["a"], shard={"index": 1, "count": 1})
    manifest = _manifest(["a"], shard={"index": 1, "count": 1})
    del manifest["plan"]
    set_attribute(lost, "manifest", dumps(manifest))
    with refused(lost, r"its manifest has no plan"):
        merge_shards(tmp_path / "out.h5", [lost])
    listed = _shard(tmp_path / "listed.h5", ["a"], ["a"], shard={"index": 1, "count": 1})
    set_attribute(listed, "manifest", dumps(_manifest(["a"], plan=[1], shard={"index": 1, "count": 1})))
    with refused(listed, r"its manifest's plan is \[1\], not an object"):
        merge_shards(tmp_path / "out.h5", [listed])


@pytest.mark.timeout(20)
def test_merge_of_a_shard_claiming_a_huge_split_lists_a_few_absent_shards(tmp_path: Path):
    one = _shard(tmp_path / "s1.h5", ["a"], ["a"], shard={"index": 1, "count": 10**12})
    with pytest.raises(CacheError, match=r"shards \[2, 3, .*, 11\] and 999999999989 more of 1000000000000 are missing"):
        merge_shards(tmp_path / "out.h5", [one])


@pytest.mark.parametrize(
    ("statuses", "dtype"),
    [
        ([], "float32"),
        ([MISSING, UNREADABLE, MISSING], "float32"),
        ([OK, MISSING, OK], "float16"),
        ([OK, OK], "float32"),
    ],
    ids=["empty", "all-missing", "float16", "float32"],
)
def test_caches_written_by_the_writer_still_open_with_the_same_grids(tmp_path: Path, statuses, dtype: str):
    path = tmp_path / "real.h5"
    ids = [f"id{k}" for k in range(len(statuses))]
    grids = write_cache(path, ids, statuses, dtype=dtype, counts={"total": len(ids)})
    with FeatureCache(path, expect={"dtype": dtype}) as features:
        assert features.ids == ids and features.dtype == dtype
        assert [features.status(i) for i in ids] == [s.label for s in statuses]
        for row, image_id in enumerate(ids):
            grid, present = features.get(image_id)  # (49, 2048) float32
            assert present == (statuses[row] is OK)
            assert torch.equal(grid, torch.from_numpy(grids[row].astype(np.float32).reshape(49, 2048)))
