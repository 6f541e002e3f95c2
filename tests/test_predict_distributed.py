"""`umt predict` under torchrun (2 CPU processes, gloo) against one process: the same output byte
for byte, the same bad lines, the same --strict stop, each process tagging its chunks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from conftest import train_request, write_grid_cache
from rich.console import Console

from umt.pipeline.data.layout import load_split
from umt.pipeline.errors import ConfigError, DataFormatError
from umt.stages import predict, train
from umt.stages.requests import PredictRequest

pytestmark = pytest.mark.usefixtures("one_thread")

#: Posts per chunk: the 26 posts of the input (one whose image is missing) make 9 chunks, so 5
#: rounds of 2 chunks, the last with one chunk only (rank 0's).
CHUNK = 3
TIMEOUT_S = 120
MISSING = "nowhere"  # an image id the cache does not hold: a bad line found by the tagging process
#: What torchrun runs: the command line itself, with chunks of CHUNK posts (the command has no
#: option for the chunk size, and 25 posts in chunks of 256 would be one chunk: rank 0's alone).
WORKER = f"""
import functools
import sys

from umt import cli
from umt.stages import requests

requests.PredictRequest = functools.partial(requests.PredictRequest, chunk_size={CHUNK})
cli.main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def setup(tiny_root, tiny_encoder_dir, tmp_path_factory) -> dict:
    """A UMT trained on the tiny dataset with random grids (no ResNet), and 25 posts to tag with
    that cache: chunk 1 (the second process's) has the missing image, chunk 4 invalid JSON."""
    base = tmp_path_factory.mktemp("predict_ddp")
    rng = np.random.default_rng(0)
    splits = {split: load_split(tiny_root, "tiny", split) for split in ("train", "valid", "test")}
    grids = {p.image: rng.normal(size=(49, 2048)).astype(np.float32) for posts in splits.values() for p in posts}
    cache = write_grid_cache(base / "tiny.h5", grids)
    run = base / "run"
    train.run(train_request(tiny_root, tiny_encoder_dir, run, model="umt", features=cache, train={"epochs": 3}))
    records = [{"text": " ".join(p.tokens), "image": p.image, "id": p.image} for p in splits["test"] + splits["valid"]]
    records.insert(4, {"text": "Great to see Anna in Paris", "image": MISSING})
    records.insert(20, {"text": "Anna in Paris 🇫🇷 today 👩\u200d👩\u200d👧"})  # no image
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    lines.insert(13, "{not json")
    lines.insert(7, "")  # a blank line is no post and no bad line
    inputs = base / "posts.jsonl"
    inputs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (base / "worker.py").write_text(WORKER, encoding="utf-8")
    return {"base": base, "run": run, "cache": cache, "inputs": inputs, "records": records}


def _alone(setup: dict, output: Path, **options) -> tuple[dict | Exception, str]:
    """One process, in this one, with the same chunks: its summary (or error) and its messages."""
    messages = StringIO()
    request = PredictRequest(
        setup["run"], input=setup["inputs"], features=setup["cache"], output=output, chunk_size=CHUNK, **options
    )
    try:
        outcome = predict.run(request, Console(file=messages, width=200))
    except DataFormatError as e:
        outcome = e
    return outcome, messages.getvalue()


def _torchrun(setup: dict, output: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    argv = ["predict", str(setup["run"]), "--input", str(setup["inputs"]), "--features", str(setup["cache"]),
            "--output", str(output), "--device", "cpu", *options]  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(setup["base"] / "worker.py"), *argv]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=setup["base"])


def _skipped(messages: str) -> list[str]:
    return [line.strip() for line in messages.splitlines() if line.strip().endswith("(skipped)")]


def test_two_processes_write_what_one_process_writes(setup, tmp_path):
    summary, messages = _alone(setup, tmp_path / "one.jsonl")
    assert summary["posts"] == 25 and summary["bad_lines"] == 2
    assert summary["entities"] > 10  # the scores, floats, are compared byte for byte too
    done = _torchrun(setup, tmp_path / "two.jsonl")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one, two = (tmp_path / "one.jsonl").read_bytes(), (tmp_path / "two.jsonl").read_bytes()
    assert one == two
    written = [json.loads(line) for line in two.decode().splitlines()]
    tagged = [r for r in setup["records"] if r.get("image") != MISSING]
    assert [(o["text"], o.get("image")) for o in written] == [(r["text"], r.get("image")) for r in tagged]
    assert not (tmp_path / "two.jsonl.partial").exists()
    # the bad lines are reported once (by rank 0), as one process reports them
    assert _skipped(done.stderr) == _skipped(messages) and len(_skipped(messages)) == 2
    assert any(f"image id '{MISSING}' is not in the feature cache" in line for line in _skipped(messages))
    # both processes tagged: rank 0 chunks 0, 2, 4, 6 and 8 (3 + 3 + 3 + 3 + 2 posts), rank 1
    # chunks 1, 3, 5 and 7 (12 posts, one of which has the missing image)
    assert re.search(r"tagged 25 posts \(\d+ entities, 2 bad lines skipped\)", done.stderr), done.stderr
    assert "2 processes tagged 14 + 11" in done.stderr, done.stderr
    assert done.stderr.count("tagged 25 posts") == 1  # the other process prints nothing


def test_strict_stops_both_processes_where_one_process_stops(setup, tmp_path):
    error, _ = _alone(setup, tmp_path / "one.jsonl", strict=True)
    assert isinstance(error, DataFormatError) and MISSING in str(error)
    done = _torchrun(setup, tmp_path / "two.jsonl", "--strict")
    assert done.returncode != 0
    # every process stops with the error of the line, found by the second process (chunk 1)
    assert done.stderr.count(f"error: {error}") == 2, done.stderr[-3000:]
    assert not (tmp_path / "two.jsonl").exists()
    kept = (tmp_path / "two.jsonl.partial").read_bytes()
    assert kept == (tmp_path / "one.jsonl.partial").read_bytes() and len(kept.splitlines()) == CHUNK


def test_standard_input_is_refused_under_torchrun(setup, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ConfigError, match="under torchrun every process reads the input itself"):
        predict.run(PredictRequest(setup["run"], features=setup["cache"]))
