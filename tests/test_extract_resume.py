"""Interruptions, resumption, concurrent writers and shards, each compared bit for bit with one
uninterrupted run of the same plan (6 images in 3 chunks of 2, one of them unreadable)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from umt.cache.durable import TMP_TAG
from umt.cache.format import CacheWriter
from umt.cache.lock import exclusive_lock
from umt.cache.manifest import identity
from umt.cache.merge import merge_shards
from umt.cache.workdir import WorkDir
from umt.pipeline.errors import CacheError
from umt.stages.extract_images import run
from umt.stages.requests import ExtractRequest, Shard

BATCH = 2
NUM_IMAGES = 6
KILL_TIMEOUT_S = 120


def read_all(path: Path) -> dict:
    """Every dataset of a cache and its identity manifest: what "identical" compares."""
    import json

    with h5py.File(path, "r") as f:
        return {
            "ids": list(f["ids"].asstr()[:]),
            "status": f["status"][:],
            "reason": list(f["reason"].asstr()[:]),
            "features": f["features"][:],
            "identity": identity(json.loads(f.attrs["manifest"])),
            "counts": json.loads(f.attrs["manifest"])["counts"],
        }


def assert_identical(path: Path, reference: dict) -> None:
    got = read_all(path)
    assert got["ids"] == reference["ids"] and got["reason"] == reference["reason"]
    assert np.array_equal(got["status"], reference["status"])
    assert got["features"].dtype == reference["features"].dtype
    assert got["features"].tobytes() == reference["features"].tobytes()  # bit for bit
    assert got["identity"] == reference["identity"] and got["counts"] == reference["counts"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume") / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(NUM_IMAGES - 1):
        pixels = rng.integers(0, 256, size=(60 + 7 * i, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.jpg", quality=90)
    (folder / "02-broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def config_for(images: Path, out: Path, **changes) -> ExtractRequest:
    base = ExtractRequest(images=images, out=out, weights="random", batch_size=BATCH, num_workers=1)
    return ExtractRequest(**{**vars(base), **changes})


def quiet() -> Console:
    return Console(file=io.StringIO())


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> dict:
    out = run(config_for(images, tmp_path_factory.mktemp("ref") / "feats.h5"), console=quiet()).path
    data = read_all(out)
    assert len(data["ids"]) == NUM_IMAGES and data["counts"]["unreadable"] == 1
    return data


class SimulatedCrash(Exception):
    pass


def test_resume_after_a_crash_equals_an_uninterrupted_run(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "feats.h5"
    real_write = WorkDir.write_chunk
    written = []

    def crash_after_two(self, index, chunk):
        if len(written) == 2:
            # as if killed mid-write: a half-written temporary file (atomic_write's name), never renamed
            (self.root / f".chunk-000002.npz{TMP_TAG}1f2e3d4c").write_bytes(b"half a chunk")
            raise SimulatedCrash()
        real_write(self, index, chunk)
        written.append(index)

    monkeypatch.setattr(WorkDir, "write_chunk", crash_after_two)
    with pytest.raises(SimulatedCrash):
        run(config_for(images, out), console=quiet())
    monkeypatch.undo()
    partial = tmp_path / "feats.h5.partial"
    assert not out.exists()
    assert sorted(p.name for p in partial.glob("chunk-*.npz")) == ["chunk-000000.npz", "chunk-000001.npz"]
    # other settings on the unfinished work are refused, naming what differs
    with pytest.raises(CacheError, match=r"unfinished extraction with other settings .*dtype"):
        run(config_for(images, out, dtype="float32"), console=quiet())
    with pytest.raises(CacheError, match=r"chunk_size: expected 3, found 2"):
        run(config_for(images, out, batch_size=3), console=quiet())
    # a finished chunk damaged on disk (say, by a power cut) is noticed and computed again
    damaged = partial / "chunk-000001.npz"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    shown = io.StringIO()
    run(config_for(images, out), console=Console(file=shown, width=200))
    assert "discarded 1 damaged work files" in shown.getvalue()
    assert "resuming: 1 of 3 chunks already done" in shown.getvalue()
    assert "extracted 4 images" in shown.getvalue()  # chunks 1 and 2 only
    assert_identical(out, reference)
    assert not partial.exists() and not (tmp_path / "feats.h5.lock").exists()


@pytest.mark.slow  # starts a second Python process with torch
def test_resume_after_sigkill_equals_an_uninterrupted_run(images, reference, tmp_path, monkeypatch):
    out = tmp_path / "feats.h5"
    partial = tmp_path / "feats.h5.partial"
    command = [
        sys.executable,
        "-m",
        "umt.cli",
        "extract-images",
        "--images",
        str(images),
        "--out",
        str(out),
        "--weights",
        "random",
        "--batch-size",
        str(BATCH),
        "--num-workers",
        "1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    try:
        while not any(partial.glob("chunk-*.npz")):
            assert proc.poll() is None, f"extraction ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, "no chunk was finished in time"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    done = len(list(partial.glob("chunk-*.npz")))
    assert 1 <= done < 3
    # Resume at once (the dead process's lock, and its orphaned workers' copies, must not block
    # us), and crash again while assembling the HDF5 file: nothing may be published.
    monkeypatch.setattr(CacheWriter, "finish", crash)
    shown = io.StringIO()
    with pytest.raises(SimulatedCrash):
        run(config_for(images, out), console=Console(file=shown, width=200))
    assert f"resuming: {done} of 3 chunks already done" in shown.getvalue()
    assert not out.exists() and len(list(partial.glob("chunk-*.npz"))) == 3
    monkeypatch.undo()
    # Now die after publishing the file but before removing the work folder.
    monkeypatch.setattr(WorkDir, "remove", crash)
    with pytest.raises(SimulatedCrash):
        run(config_for(images, out), console=quiet())
    monkeypatch.undo()
    assert out.exists() and partial.exists()
    shown = io.StringIO()
    run(config_for(images, out), console=Console(file=shown, width=200))
    assert "up to date" in shown.getvalue() and not partial.exists()
    assert_identical(out, reference)


def crash(*args, **kwargs):
    raise SimulatedCrash()


def test_a_second_writer_is_refused(images, tmp_path):
    out = tmp_path / "feats.h5"
    with exclusive_lock(out), pytest.raises(CacheError, match="is being written by process"):
        run(config_for(images, out), console=quiet())
    assert not (tmp_path / "feats.h5.partial").exists()


def test_shards_merged_equal_a_single_run(images, reference, tmp_path):
    out = tmp_path / "feats.h5"
    shard_paths = [run(config_for(images, out, shard=Shard(k, 2)), console=quiet()).path for k in (2, 1)]
    assert sorted(p.name for p in shard_paths) == ["feats.shard-1-of-2.h5", "feats.shard-2-of-2.h5"]
    first = read_all(shard_paths[1])
    assert first["ids"] == ["00.jpg", "01.jpg", "03.jpg", "04.jpg"]  # chunks 0 and 2
    merged = tmp_path / "merged.h5"
    merge_shards(merged, shard_paths)
    assert_identical(merged, reference)


def test_extraction_under_torchrun_equals_one_process(images, reference, tmp_path):
    out = tmp_path / "feats.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "umt.cli",
        "extract-images", "--images", str(images), "--out", str(out), "--weights", "random",
        "--batch-size", str(BATCH), "--num-workers", "1",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=KILL_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert_identical(out, reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.h5"]  # the shards are merged and removed
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=KILL_TIMEOUT_S)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout[-2000:] + again.stderr[-2000:]
