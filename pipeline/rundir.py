"""The run directory: everything needed to evaluate or predict with only its path.

Layout (all JSON is UTF-8, one object per file unless noted)::

    config.json              model name, ModelConfig, TrainConfig, dataset, data root, feature cache + manifest
    labels.json              the BIO2 label vocabulary (order = model output ids)
    encoder/                 the encoder's config and tokenizer files (weights live in the checkpoint)
    best.pt                  model state_dict of the epoch with the best dev F1 (+ epoch, dev F1)
    last.pt                  full training state after the last completed epoch (removed when the run ends)
    metrics.json             dev and test scores of best.pt: P/R/F1 overall and per type, both schemes
    predictions_test.conll   word<TAB>gold<TAB>predicted, blank line between posts, "# image: <id>" headers
    log.jsonl                one JSON object per event (start, epoch, end), appended as training goes
    env.json                 package versions, device, command line
    visual_stats.pt          channel mean/std of the training grids (only with standardize_visual)

Every file is written atomically (temp file + rename), so a crash never leaves a torn file.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import torch

from pipeline.data.types import Post

CONFIG = "config.json"
LABELS = "labels.json"
ENCODER = "encoder"
BEST = "best.pt"
LAST = "last.pt"
METRICS = "metrics.json"
LOG = "log.jsonl"
ENV = "env.json"
VISUAL_STATS = "visual_stats.pt"
_PACKAGES = ("torch", "torchvision", "transformers", "tokenizers", "h5py", "pytorch-crf", "seqeval", "umt")


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    data = json.dumps(obj, indent=2, ensure_ascii=False).encode() + b"\n"
    _atomic(path, lambda h: h.write(data))


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def save_torch(path: Path, obj) -> None:
    _atomic(path, lambda h: torch.save(obj, h))


def load_torch(path: Path):
    return torch.load(path, map_location="cpu", weights_only=False)


def append_log(run: Path, record: dict) -> None:
    """Append one event to ``log.jsonl`` (a line is written in one call and flushed)."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
    with open(run / LOG, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()


def write_conll(path: Path, posts: Sequence[Post], predictions: Sequence[Sequence[str]]) -> None:
    lines: list[str] = []
    for post, pred in zip(posts, predictions, strict=True):
        lines.append(f"# image: {post.image if post.image is not None else '-'}")
        gold = post.labels if post.labels is not None else ["-"] * len(post.tokens)
        lines.extend(f"{w}\t{g}\t{p}" for w, g, p in zip(post.tokens, gold, pred, strict=True))
        lines.append("")
    text = "\n".join(lines) + "\n"
    _atomic(path, lambda h: h.write(text.encode("utf-8")))


def environment(device: torch.device) -> dict:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "argv": sys.argv,
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
