"""Real-text measurement: text-only baselines and UMT with every image absent, on real tweets.

Trains ``bert-softmax``, ``bert-crf`` and ``umt --no-images`` on a Twitter dataset with the same
encoder, epochs and learning rate, and prints dev and test P/R/F1 and wall time per model.
It reads real data and a real encoder from paths you give; nothing here runs in the tests.

    python benchmarks/bench_real_text.py --data-root ../shared/data --dataset twitter2017 \
        --encoder /path/to/all-MiniLM-L6-v2 --epochs 3 --out bench_out/real_text
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from umt.pipeline.metrics import PRIMARY
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.train_config import TrainConfig
from umt.stages import train
from umt.stages.requests import TrainRequest

MODELS = (("bert-softmax", False), ("bert-crf", False), ("umt", True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--dataset", default="twitter2017")
    parser.add_argument("--encoder", required=True, help="local Hugging Face model folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--models", default=",".join(m for m, _ in MODELS))
    parser.add_argument("--out", type=Path, default=Path("bench_out/real_text"))
    args = parser.parse_args()
    console = Console()
    wanted = args.models.split(",")
    rows = []
    for name, no_images in MODELS:
        if name not in wanted:
            continue
        started = time.perf_counter()
        (metrics,) = train.run(
            TrainRequest(
                dataset=args.dataset,
                model=name,
                data_root=args.data_root,
                model_cfg=ModelConfig(encoder=args.encoder, heads=args.heads),
                train_cfg=TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed),
                out=args.out / name,
                no_images=no_images,
                resume=True,
            ),
            console=console,
        )
        rows.append((name + (" (no images)" if no_images else ""), metrics, time.perf_counter() - started))
    table = Table(
        title=f"{args.dataset}, encoder {args.encoder}, {args.epochs} epochs, lr {args.lr}", title_justify="left"
    )
    for column in ("model", "dev P", "dev R", "dev F1", "test P", "test R", "test F1", "best epoch", "wall s"):
        table.add_column(column, justify="right")
    for name, m, seconds in rows:
        dev, test = m["valid"][PRIMARY], m["test"][PRIMARY]
        table.add_row(
            name,
            *(f"{100 * s[k]:.2f}" for s in (dev, test) for k in ("precision", "recall", "f1")),
            str(m["best_epoch"]),
            f"{m.get('train_seconds', seconds):.0f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
