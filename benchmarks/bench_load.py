"""How long a trained run takes to load: ``umt.load(run)`` end to end (config, labels, text side,
model build, weights), and the weights file alone, each the median of several rounds.

    python benchmarks/bench_load.py RUN [RUN ...] [--rounds 7]

Works on any run this umt reads (safetensors weights, or a format-2 run's ``best.pt``), so the
same script times a run written before and after a format change, each with its own umt.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import umt


def _weights_seconds(run: Path) -> tuple[str, float]:
    weights = run / "model.safetensors"
    started = time.perf_counter()
    if weights.is_file():
        from safetensors.torch import load_file

        load_file(str(weights))
        return weights.name, time.perf_counter() - started
    torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    return "best.pt", time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"umt from {Path(umt.__file__).parent}, torch {torch.__version__}")
    for run in args.runs:
        umt.load(run, device="cpu")  # warm the file cache and the imports
        loads, reads = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            umt.load(run, device="cpu")
            loads.append(time.perf_counter() - started)
            name, seconds = _weights_seconds(run)
            reads.append(seconds)
        size = sum(p.stat().st_size for p in run.iterdir() if p.name in ("model.safetensors", "best.pt"))
        print(
            f"{run}: umt.load median {statistics.median(loads):.3f} s (min {min(loads):.3f}); "
            f"{name} ({size / 2**20:.1f} MiB) read median {statistics.median(reads) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
