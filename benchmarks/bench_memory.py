"""Training memory against the size of the feature cache: peak RSS at 1k, 5k and 20k images.

For each size N it generates N training posts, each with its own image, and a feature cache of
their random float16 grids (N x 200 KB on disk, plus 5% for the dev and test posts). Then, in a
fresh process, it trains ``umt`` for one epoch over all N posts, so that every grid is read once,
and reports that process's peak RSS. The encoder is small and random, so the model's own memory
stays small beside what the data could cost. Flat figures mean the trainer streams the grids
from the cache instead of holding them. With ``--posts K`` the training set stays at K posts and
the cache holds N images all the same (K of them read): what grows then is the cache alone,
while without it the posts (their windows, labels, tokens) grow with N as well.

    python benchmarks/bench_memory.py --sizes 1000,5000,20000
    python benchmarks/bench_memory.py --sizes 1000,5000,20000 --posts 1000
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, write_random_cache  # noqa: E402

WORDS = ["great", "day", "with", "today", "so", "happy", "the", "we", "love", "new", "visits", "!"]
NAMES = ["Anna", "Brian", "Chloe", "Dmitri", "Paris", "Lagos", "Osaka", "Quito"]


def write_posts(folder: Path, counts: dict[str, int], seed: int = 0) -> list[str]:
    """Twitter-format splits of short posts, one image each; returns every image id."""
    rng, ids = random.Random(seed), []
    folder.mkdir(parents=True)
    for split, n in counts.items():
        lines = []
        for i in range(n):
            image = f"{split}{i}"
            ids.append(image)
            lines.append(f"IMGID:{image}")
            words = [rng.choice(WORDS) for _ in range(rng.randint(3, 12))]
            position = rng.randrange(len(words))
            words.insert(position, rng.choice(NAMES))
            labels = ["B-PER" if w in NAMES else "O" for w in words]
            lines.extend(f"{w}\t{lab}" for w, lab in zip(words, labels, strict=True))
            lines.append("")
        (folder / f"{split}.txt").write_text("\n".join(lines), encoding="utf-8")
    return ids


def child(root: Path, encoder: Path, out: Path) -> None:
    """Train one epoch of umt on the generated dataset; print the peak RSS as JSON."""
    from rich.console import Console

    from umt.pipeline.models.config import ModelConfig
    from umt.pipeline.train_config import TrainConfig
    from umt.stages import train
    from umt.stages.requests import TrainRequest

    before = peak_rss_mb()
    request = TrainRequest(
        dataset="mem",
        model="umt",
        data_root=root,
        model_cfg=ModelConfig(encoder=str(encoder), heads=4),
        train_cfg=TrainConfig(epochs=1, batch_size=32, eval_batch_size=64, seed=1),
        out=out,
    )
    metrics = train.run(request, console=Console(file=io.StringIO()))[0]
    print(json.dumps({"peak_rss_mb": peak_rss_mb(), "rss_before_training_mb": before,
                      "train_seconds": metrics["train_seconds"]}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--posts", type=int, default=0, help="training posts (default: one per image)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*(Path(p) for p in args.child))
        return
    from umt.pipeline.models.tiny import build_tiny_encoder

    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
            root = Path(tmp) / "data"
            posts = args.posts or size
            dev = max(64, posts // 20)
            ids = write_posts(root / "mem", {"train": posts, "valid": dev, "test": dev})
            write_random_cache(root / "mem_resnet152.h5", ids + [f"other{i}" for i in range(size - posts)])
            encoder = build_tiny_encoder(Path(tmp) / "encoder", words=WORDS + NAMES, hidden=96, layers=2, heads=4)
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(root), str(encoder), str(Path(tmp) / "run")],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode:
                sys.exit(f"the training process failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            cache_mb = (root / "mem_resnet152.h5").stat().st_size / 2**20
            rows.append({"images": size, "train_posts": posts, "cache_mb": round(cache_mb), **result})
            print(json.dumps(rows[-1]), flush=True)
    print(f"{'images':>8} {'posts':>8} {'cache MiB':>10} {'peak RSS MiB':>13} {'RSS before':>11} {'train s':>8}")
    for row in rows:
        print(f"{row['images']:>8} {row['train_posts']:>8} {row['cache_mb']:>10} {row['peak_rss_mb']:>13.0f} "
              f"{row['rss_before_training_mb']:>11.0f} {row['train_seconds']:>8.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
