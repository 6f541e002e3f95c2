"""Real-text measurement: any registered models on real tweets, images absent, several seeds.

Trains each model of ``--models`` on a Twitter dataset (multimodal ones with every image absent,
as ``--no-images`` does) for each seed, and prints dev and test P/R/F1 as mean ± std over the
seeds with the wall time per run. Settings not given here are each model's own defaults (``umt
models --defaults``); ``--epochs``, ``--lr`` and ``--batch-size`` override them for every model.
It reads real data, a real encoder and real vectors from paths you give; no test runs it.
Finished runs are reused (``--out`` keeps them), killed ones resumed.

    python benchmarks/bench_real_text.py --data-root ../shared/data --dataset twitter2017 \
        --encoder /path/to/all-MiniLM-L6-v2 --models bert-crf,gvatt-bert-crf,adacan-bert-crf --epochs 2
    python benchmarks/bench_real_text.py --data-root ../shared/data --dataset twitter2017 \
        --word-vectors /path/to/glove --models bilstm-crf,cnn-bilstm-crf,hbilstm-crf --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from umt.pipeline.metrics import PRIMARY
from umt.pipeline.models.catalog import get_recipe
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.text.vectors import vectors_source
from umt.pipeline.train_config import TrainConfig
from umt.stages import train
from umt.stages.requests import TrainRequest


def _cell(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--dataset", default="twitter2017")
    parser.add_argument("--models", default="bert-softmax,bert-crf,umt")
    parser.add_argument("--encoder", default="bert-base-cased", help="local Hugging Face model folder")
    parser.add_argument("--word-vectors", default="", help="vectors for the BiLSTM models (file or folder)")
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--out", type=Path, default=Path("bench_out/real_text"))
    args = parser.parse_args()
    console = Console()
    seeds = [int(s) for s in args.seeds.split(",")]
    given = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size)) if v}
    rows = []
    for name in args.models.split(","):
        multimodal = get_recipe(name).multimodal
        results = train.run(
            TrainRequest(
                dataset=args.dataset,
                model=name,
                data_root=args.data_root,
                model_cfg=ModelConfig(
                    encoder=args.encoder, heads=args.heads, word_vectors=vectors_source(args.word_vectors)
                ),
                train_cfg=TrainConfig(**given, seed=seeds[0]),
                seeds=tuple(seeds),
                out=args.out / name,
                no_images=multimodal,
                resume=True,
                explicit=frozenset({*given, "encoder", "heads", "word_vectors"}),
            ),
            console=console,
        )
        rows.append((name + (" (no images)" if multimodal else ""), results))
    title = f"{args.dataset}, seeds {args.seeds}, " + ", ".join(f"{k} {v}" for k, v in given.items())
    table = Table(title=title.rstrip(", ") + " (mean ± std)", title_justify="left")
    for column in ("model", "dev P", "dev R", "dev F1", "test P", "test R", "test F1", "best epochs", "s / run"):
        table.add_column(column, justify="right")
    for name, results in rows:
        cells = [
            _cell([m[split][PRIMARY][k] for m in results])
            for split in ("valid", "test")
            for k in ("precision", "recall", "f1")
        ]
        epochs = ",".join(str(m["best_epoch"]) for m in results)
        seconds = statistics.fmean(m["train_seconds"] for m in results)
        table.add_row(name, *cells, epochs, f"{seconds:.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
