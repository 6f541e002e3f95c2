"""The HDF5 cache on its own: writer, reader, manifest checks, locking, merge refusals, info.

Caches here are written directly with random grids, so no backbone runs and every test takes
milliseconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from umt.cache import FeatureCache, Status, UnknownImageError, default_cache_path
from umt.cache.format import CacheWriter
from umt.cache.grid import GridShape
from umt.cache.lock import exclusive_lock, lock_path
from umt.cache.manifest import dumps, ids_digest, mismatches
from umt.cache.merge import merge_shards
from umt.cache.workdir import Plan, WorkDir
from umt.pipeline.errors import CacheError
from umt.stages import cache_info
from umt.stages.requests import CacheInfoRequest

SHAPE = GridShape(7, 7, 2048)
GRID_SHAPE = SHAPE.stored


def _manifest(ids: list[str], **extra) -> dict:
    return {
        "format_version": 1,
        "backbone": "resnet152",
        "weights": {"source": "random", "seed": 0},
        "grid": [7, 7],
        "channels": 2048,
        "preprocessing": {"resize": [224, 224], "interpolation": "bilinear"},
        "dtype": "float16",
        "plan": {"ids_sha256": ids_digest(ids), "total": len(ids), "chunk_size": 2},
        **extra,
    }


def write_cache(path: Path, ids: list[str], status: list[Status], manifest: dict, seed: int = 0) -> np.ndarray:
    """A cache with random float16 grids (zeros where not ok); returns the grids written."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((len(ids), *GRID_SHAPE)).astype(np.float16)
    codes = np.array([int(s) for s in status], dtype=np.uint8)
    features[codes != Status.OK] = 0
    reasons = ["" if s is Status.OK else f"{s.label} because of test" for s in status]
    with CacheWriter(path, path.with_name(path.name + ".tmp"), len(ids), "float16", SHAPE) as writer:
        writer.append(ids, codes, reasons, features[codes == Status.OK])
        writer.finish(dumps(manifest))
    return features


@pytest.fixture
def small_cache(tmp_path: Path) -> tuple[Path, list[str], np.ndarray]:
    ids = ["a", "b", "c", "d"]
    status = [Status.OK, Status.MISSING, Status.OK, Status.UNREADABLE]
    path = tmp_path / "small.h5"
    features = write_cache(path, ids, status, _manifest(ids))
    return path, ids, features


def test_reader_returns_grids_flags_and_statuses(small_cache):
    path, ids, features = small_cache
    with FeatureCache(path) as cache:
        assert cache.ids == ids and len(cache) == 4
        grid, present = cache.get("a")
        assert present and grid.dtype == torch.float32 and grid.shape == (49, 2048)
        assert torch.equal(grid, torch.from_numpy(features[0].astype(np.float32).reshape(49, 2048)))
        # row-major flattening: block 8 is grid row 1, column 1
        assert torch.equal(grid[8], torch.from_numpy(features[0, 1, 1].astype(np.float32)))
        zeros, present = cache.get("b")
        assert not present and not zeros.any() and zeros.shape == (49, 2048)
        assert [cache.status(i) for i in ids] == ["ok", "missing", "ok", "unreadable"]
        assert cache.reason("d") == "unreadable because of test" and cache.reason("a") == ""
        assert "c" in cache and "z" not in cache
        assert cache.counts() == {"ok": 2, "missing": 1, "unreadable": 1}
        assert cache.failures() == [
            ("b", "missing", "missing because of test"),
            ("d", "unreadable", "unreadable because of test"),
        ]


def test_unknown_id_is_a_key_error_and_a_cache_error(small_cache):
    with FeatureCache(small_cache[0]) as cache:
        with pytest.raises(UnknownImageError, match="'zzz' is not in the feature cache") as raised:
            cache.get("zzz")
        assert isinstance(raised.value, KeyError) and isinstance(raised.value, CacheError)
        with pytest.raises(KeyError):
            cache.status("zzz")


def test_hdf5_layout_is_what_the_docs_promise(small_cache):
    """Other tools read the file with plain h5py: check names, shapes, dtypes, chunking, enum."""
    with h5py.File(small_cache[0], "r") as f:
        assert f.attrs["format"] == "umt-feature-cache" and f.attrs["format_version"] == 1
        assert json.loads(f.attrs["manifest"])["backbone"] == "resnet152"
        assert f["features"].shape == (4, 7, 7, 2048) and f["features"].dtype == np.float16
        assert f["features"].chunks == (1, 7, 7, 2048) and f["features"].compression is None
        assert h5py.check_enum_dtype(f["status"].dtype) == {"ok": 0, "missing": 1, "unreadable": 2}
        assert list(f["ids"].asstr()[:]) == ["a", "b", "c", "d"]


def test_expect_mismatch_names_key_expected_and_found(small_cache):
    path = small_cache[0]
    FeatureCache(path, expect={"backbone": "resnet152", "preprocessing": {"resize": (224, 224)}})
    with pytest.raises(CacheError, match=r"backbone: expected 'resnet50', found 'resnet152'"):
        FeatureCache(path, expect={"backbone": "resnet50"})
    with pytest.raises(CacheError, match=r"preprocessing\.resize: expected \[256, 256\], found \[224, 224\]"):
        FeatureCache(path, expect={"preprocessing": {"resize": [256, 256]}})
    with pytest.raises(CacheError, match="layer: expected 'layer3', found nothing"):
        FeatureCache(path, expect={"layer": "layer3"})


def test_mismatches_compares_only_the_expected_keys():
    found = {"a": 1, "b": {"c": 2, "d": 3}}
    assert mismatches(found, {"b": {"c": 2}}) == []
    assert mismatches(found, {"b": {"d": 4}}) == ["b.d: expected 4, found 3"]


def test_not_a_umt_cache_is_refused(tmp_path: Path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(CacheError, match="not a umt feature cache"):
        FeatureCache(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(CacheError, match="HDF5 file but not a umt feature cache"):
        FeatureCache(other)
    with pytest.raises(CacheError, match="does not exist"):
        FeatureCache(tmp_path / "absent.h5")


def test_newer_format_version_is_refused(small_cache):
    with h5py.File(small_cache[0], "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(CacheError, match="format version 99"):
        FeatureCache(small_cache[0])


def test_writer_places_grids_in_ok_rows_and_allocates_nothing_for_failures(tmp_path: Path):
    out = tmp_path / "sparse.h5"
    ok, bad = Status.OK, Status.MISSING
    blocks = [[ok, ok, bad, ok], [bad, bad, ok, ok, ok]]  # runs of several ok rows, across appends
    rng = np.random.default_rng(1)
    expected, n = [], 0
    with CacheWriter(out, tmp_path / "sparse.tmp", 9, "float32", SHAPE) as writer:
        for block in blocks:
            codes = np.array(block, dtype=np.uint8)
            grids = rng.standard_normal((int((codes == ok).sum()), *GRID_SHAPE)).astype(np.float32)
            writer.append([f"id{n + i}" for i in range(len(block))], codes, [""] * len(block), grids)
            rows = iter(grids)
            expected += [next(rows) if s is ok else np.zeros(GRID_SHAPE, np.float32) for s in block]
            n += len(block)
        with pytest.raises(ValueError, match="0 rows are ok but 1 grids"):
            writer.append(["x"], np.array([bad], np.uint8), [""], grids[:1])
        writer.finish(dumps(_manifest([])))
    with h5py.File(out, "r") as f:
        assert np.array_equal(f["features"][:], np.stack(expected))
        assert f["features"].id.get_storage_size() == 6 * 7 * 7 * 2048 * 4  # six ok rows only


def test_writer_abandoned_leaves_no_file(tmp_path: Path):
    out = tmp_path / "never.h5"
    tmp = tmp_path / "never.h5.tmp"
    with pytest.raises(RuntimeError), CacheWriter(out, tmp, 2, "float16", SHAPE) as writer:
        writer.append(["a"], np.zeros(1, np.uint8), [""], np.zeros((1, *GRID_SHAPE), np.float16))
        raise RuntimeError("crash while writing")
    assert not out.exists() and not tmp.exists()


def test_default_cache_path_sits_beside_the_images():
    assert default_cache_path(Path("data"), "twitter2017", "resnet152") == Path("data/twitter2017_resnet152.h5")
    assert default_cache_path(Path("data"), "twitter2017", "vit-b16") == Path("data/twitter2017_vit-b16.h5")


class _Grids(Dataset):
    def __init__(self, cache: FeatureCache):
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache.ids)

    def __getitem__(self, i: int):
        grid, present = self.cache.get(self.cache.ids[i])
        return grid, present, os.getpid()


def test_reader_works_from_two_dataloader_workers(small_cache):
    path, ids, features = small_cache
    cache = FeatureCache(path)
    cache.get("a")  # the parent opens its handle first: workers must not reuse it
    loader = DataLoader(_Grids(cache), batch_size=1, num_workers=2)
    pids = set()
    for i, (grid, present, pid) in enumerate(loader):
        expected = torch.from_numpy(features[i].astype(np.float32).reshape(49, 2048))
        assert torch.equal(grid[0], expected) and bool(present[0]) == (i in (0, 2))
        pids.add(int(pid[0]))
    assert len(pids) == 2 and os.getpid() not in pids
    cache.close()


def test_lock_refuses_a_second_writer_and_is_released(tmp_path: Path):
    out = tmp_path / "x.h5"
    with exclusive_lock(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(CacheError, match=rf"being written by process {os.getpid()}"), exclusive_lock(out):
            pass
    assert not lock_path(out).exists()
    with exclusive_lock(out):  # free again
        pass


def test_lock_of_a_killed_holder_is_free(tmp_path: Path):
    out = tmp_path / "x.h5"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from cache.lock import exclusive_lock\nfrom pathlib import Path\nimport time\n"
            f"with exclusive_lock(Path({str(out)!r})):\n    print('held', flush=True)\n    time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CacheError, match=f"process {holder.pid}"), exclusive_lock(out):
            pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while True:  # the kernel drops the lock with the process; the stale file does not matter
        try:
            with exclusive_lock(out):
                break
        except CacheError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_workdir_refuses_another_plan(tmp_path: Path):
    root = tmp_path / "x.h5.partial"
    plan = Plan(["a", "b", "c"], 2, (1, 1), {"dtype": "float16"})
    WorkDir.open(root, plan)
    WorkDir.open(root, plan)  # same plan: resumed
    with pytest.raises(CacheError, match=r"other settings \(fingerprint\.dtype: expected 'float32'"):
        WorkDir.open(root, Plan(["a", "b", "c"], 2, (1, 1), {"dtype": "float32"}))
    with pytest.raises(CacheError, match="chunk_size"):
        WorkDir.open(root, Plan(["a", "b", "c"], 3, (1, 1), {"dtype": "float16"}))
    with pytest.raises(CacheError, match="ids"):
        WorkDir.open(root, Plan(["a", "b"], 2, (1, 1), {"dtype": "float16"}))
    WorkDir.open(root, Plan(["a", "b"], 2, (1, 1), {"dtype": "float16"}), reset=True)


def test_plan_assigns_every_chunk_to_exactly_one_shard():
    ids = [str(i) for i in range(11)]
    plans = [Plan(ids, 2, (k, 3), {}) for k in (1, 2, 3)]
    assigned = [p.assigned_chunks() for p in plans]
    assert assigned == [[0, 3], [1, 4], [2, 5]]
    covered = [i for p, chunks in zip(plans, assigned, strict=True) for c in chunks for i in p.chunk(c)]
    assert covered != ids and sorted(covered) == sorted(ids)  # interleaved, each id once


def _shard(tmp_path: Path, name: str, all_ids: list[str], ids: list[str], k: int, n: int, **extra) -> Path:
    path = tmp_path / name
    write_cache(path, ids, [Status.OK] * len(ids), _manifest(all_ids, shard={"index": k, "count": n}, **extra))
    return path


def test_merge_refuses_incomplete_conflicting_or_mismatched_shards(tmp_path: Path):
    all_ids = ["a", "b", "c", "d"]
    one = _shard(tmp_path, "s1.h5", all_ids, ["a", "b"], 1, 2)
    two = _shard(tmp_path, "s2.h5", all_ids, ["c", "d"], 2, 2)
    out = tmp_path / "merged.h5"
    with pytest.raises(CacheError, match=r"shards \[2\] of 2 are missing"):
        merge_shards(out, [one])
    with pytest.raises(CacheError, match="shard 1 given twice"):
        merge_shards(out, [one, one, two])
    clash = _shard(tmp_path, "clash.h5", all_ids, ["b", "c", "d"], 2, 2)
    with pytest.raises(CacheError, match="image id 'b' is in two shards"):
        merge_shards(out, [one, clash])
    short = _shard(tmp_path, "short.h5", all_ids, ["c"], 2, 2)
    with pytest.raises(CacheError, match="not the complete output"):
        merge_shards(out, [one, short])
    other = _shard(tmp_path, "other.h5", all_ids, ["c", "d"], 2, 2, backbone="resnet50")
    with pytest.raises(CacheError, match="backbone: expected 'resnet152', found 'resnet50'"):
        merge_shards(out, [one, other])
    plain = tmp_path / "plain.h5"
    write_cache(plain, ["c", "d"], [Status.OK] * 2, _manifest(all_ids))
    with pytest.raises(CacheError, match="not a shard"):
        merge_shards(out, [one, plain])
    assert not out.exists()
    merge_shards(out, [two, one])
    with FeatureCache(out) as merged:
        assert merged.ids == all_ids and "shard" not in merged.manifest
        assert merged.manifest["merged_from"] == ["s1.h5", "s2.h5"]
    with pytest.raises(CacheError, match="already exists"):
        merge_shards(out, [one, two])


def test_info_prints_manifest_counts_size_and_failures(small_cache, capsys):
    from rich.console import Console

    cache_info.run(CacheInfoRequest(path=small_cache[0]), console=Console(width=200))
    shown = capsys.readouterr().out
    assert "resnet152" in shown and "MB on disk" in shown
    assert "missing because of test" in shown and "unreadable because of test" in shown
    assert "2 of 2 shown" in shown


def test_info_explains_an_unfinished_extraction(tmp_path: Path):
    out = tmp_path / "x.h5"
    WorkDir.open(tmp_path / "x.h5.partial", Plan(["a", "b", "c"], 2, (1, 1), {}))
    with pytest.raises(CacheError, match=r"unfinished extraction .* \(0 of 2 chunks done\)"):
        cache_info.run(CacheInfoRequest(path=out))
