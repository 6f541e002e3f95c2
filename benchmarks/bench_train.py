"""Training and prediction speed on one device, in one report (a table, then JSON).

For each model of ``--models`` (default bert-crf, mt, umt; the multimodal ones read a generated
feature cache of random grids) over the first ``--steps`` x ``--batch-size`` posts of a dataset:

- full: one training epoch through the trainer (``fit``; its ``train_seconds``, dev evaluation
  not counted): loading, cache reads, collation, forward, backward, clipping, optimiser,
  schedule and progress;
- bare: forward + backward + clipping + optimiser + schedule over the same steps, batches
  collated beforehand and already on the device; the goal is full <= 1.1 x bare. Rounds
  alternate full and bare (``--rounds``) so that other load hits both alike; medians are
  reported;
- the share of a full step spent reading the grids from the cache (goal < 5%) and collating;
- FLOPs per step (forward + backward, counted by ``torch.utils.flop_counter``), the umt /
  bert-crf ratios of time and of FLOPs, and the model FLOPs utilisation: achieved FLOP/s of
  the full epoch over this device's measured fp32 matrix-multiply peak (printed too);
- padding: the share of the encoder's padded positions that hold a real piece;
- sentences/s for training (full) and for prediction (``Predictor.predict`` over the dev split);
- peak RSS of this process; and, with ``--extract-images N``, stage one's bare vs full rate
  (``bench_extract``), so that one run gives the whole picture.

    python benchmarks/bench_train.py --data-root ../shared/data --encoder /path/to/all-MiniLM-L6-v2
    python benchmarks/bench_train.py --encoder random:bert-base --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from common import peak_rss_mb, random_encoder, write_random_cache  # noqa: E402

from umt.pipeline.data.batching import Collator, MnerDataset  # noqa: E402
from umt.pipeline.data.features import open_features  # noqa: E402
from umt.pipeline.data.layout import load_dataset  # noqa: E402
from umt.pipeline.inference.predictor import Predictor  # noqa: E402
from umt.pipeline.labels import LabelVocab  # noqa: E402
from umt.pipeline.models.catalog import get_recipe  # noqa: E402
from umt.pipeline.models.config import ModelConfig  # noqa: E402
from umt.pipeline.run_dir import RunDir  # noqa: E402
from umt.pipeline.runtime.devices import resolve_device  # noqa: E402
from umt.pipeline.runtime.precision import resolve_precision  # noqa: E402
from umt.pipeline.train_config import TrainConfig  # noqa: E402
from umt.pipeline.training.loop import fit, seed_everything  # noqa: E402
from umt.pipeline.training.optim import make_optimizer  # noqa: E402
from umt.pipeline.training.sampling import StepSampler  # noqa: E402

WARMUP_STEPS = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of this device's fp32 matrix multiply (TF32 where CUDA allows it), best of 3."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    best = math.inf
    for _ in range(3):
        _sync(device)
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 * repeats / best


class Bench:
    """One model's data, settings and measurements."""

    def __init__(self, name: str, args, data: dict, vocab: LabelVocab, features, device: torch.device):
        self.name, self.args, self.device, self.vocab = name, args, device, vocab
        self.recipe = get_recipe(name)
        model_cfg = ModelConfig(encoder=args.encoder, heads=args.heads)
        train_cfg = TrainConfig(
            epochs=1,
            batch_size=args.batch_size,
            lr=5e-5,
            seed=1,
            device=str(device),
            precision=args.precision,
            num_workers=args.num_workers,
            bucket=args.bucket,
        )
        given = frozenset(vars(train_cfg)) | {"encoder", "heads"}  # the recipe's model defaults (dropout) apply
        self.model_cfg, self.cfg = self.recipe.defaulted(model_cfg, train_cfg, given)
        self.text = self.recipe.text_side().create(self.model_cfg, data["train"])
        feats = features if self.recipe.multimodal else None
        self.train = MnerDataset(data["train"], self.text, vocab, feats, name="train")
        self.dev = MnerDataset(data["valid"], self.text, vocab, feats, name="dev")
        self.collate = Collator(self.text, feats.shape if feats is not None else None)

    def model(self):
        seed_everything(1)
        return self.recipe.build(self.model_cfg, self.vocab, self.text).to(self.device)

    def sampler(self) -> StepSampler:
        lengths = [item.window.positions for item in self.train.items]
        return StepSampler(len(self.train), self.cfg.batch_size, self.cfg.seed, lengths=lengths, bucket=self.cfg.bucket)

    def batches(self) -> list:
        sampler = self.sampler()
        return [self.collate([self.train[i] for i in part.indices]) for part in sampler.parts()]

    def full_epoch(self, folder: Path) -> float:
        """Seconds of one training epoch through the trainer (dev evaluation excluded)."""
        run = RunDir(folder)
        with run.claimed(resume=False, overwrite=True):
            quiet = Console(file=io.StringIO())
            fit(self.model(), self.train, self.dev, self.text, self.vocab, self.cfg, run, console=quiet)
            return next(e["train_seconds"] for e in run.events() if e["event"] == "epoch")

    def bare_epoch(self, batches: list) -> float:
        """Seconds of forward + backward + optimiser steps over batches already on the device."""
        model = self.model()
        model.train()
        optimizer, scheduler = make_optimizer(model, self.cfg, len(batches), self.device)
        precision = resolve_precision(self.cfg.precision, self.device)
        on_device = [b.to(self.device) for b in batches]

        def step(batch) -> None:
            with precision.autocast():
                loss = model(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)

        for batch in on_device[:WARMUP_STEPS]:
            step(batch)
        _sync(self.device)
        started = time.perf_counter()
        for batch in on_device:
            step(batch)
        _sync(self.device)
        seconds = time.perf_counter() - started
        return seconds

    def flops(self, batches: list) -> float:
        """Forward + backward FLOPs of an epoch's steps, counted on the model's operators."""
        from torch.utils.flop_counter import FlopCounterMode

        model = self.model()
        counter = FlopCounterMode(display=False)
        with counter:
            for batch in batches:
                model(batch.to(self.device)).backward()
        return counter.get_total_flops()

    def input_costs(self, batches: list) -> tuple[float, float]:
        """Seconds of an epoch's grid reads from the cache, and of its collation."""
        parts = self.sampler().parts()
        features = self.train.features
        read = 0.0
        if features is not None:
            started = time.perf_counter()
            for part in parts:
                for i in part.indices:
                    image = self.train.items[i].image
                    if image is not None:
                        features.get(image)
            read = time.perf_counter() - started
        rows = [[self.train[i] for i in part.indices] for part in parts]
        started = time.perf_counter()
        for chunk in rows:
            self.collate(chunk)
        return read, time.perf_counter() - started

    def padding_efficiency(self, batches: list) -> float:
        """Real pieces over padded positions, over the epoch's batches."""
        real = padded = 0
        for batch in batches:
            mask = getattr(batch.text, "attention_mask", None)
            mask = mask if mask is not None else batch.word_mask
            real += int(mask.sum())
            padded += mask.numel()
        return real / padded

    def predict_rate(self) -> float:
        model = self.model()
        predictor = Predictor(model, self.text, self.vocab, self.cfg, self.device)
        predictor.predict(self.dev)  # warm-up
        started = time.perf_counter()
        predictor.predict(self.dev)
        return len(self.dev.posts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dataset", default="twitter2017")
    parser.add_argument(
        "--encoder",
        default="random:minilm",
        help="local Hugging Face folder, or random:minilm / random:bert-base (random weights)",
    )
    parser.add_argument("--models", default="bert-crf,mt,umt")
    parser.add_argument("--steps", type=int, default=80, help="training steps per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternating full / bare rounds (medians)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dev-posts", type=int, default=320, help="posts tagged for the prediction rate")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--bucket", type=int, default=0, help="length-bucketed steps (pools of N steps); 0: off")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--extract-images", type=int, default=0, help="also run bench_extract on N generated images")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    console = Console(width=160)
    splits = load_dataset(args.data_root, args.dataset)
    data = {"train": splits["train"][: args.steps * args.batch_size], "valid": splits["valid"][: args.dev_posts]}
    vocab = LabelVocab.from_sequences(p.labels for posts in splits.values() for p in posts)
    report: dict = {"device": str(device), "threads": torch.get_num_threads(), "precision": args.precision,
                    "dataset": args.dataset, "steps": args.steps, "batch_size": args.batch_size,
                    "bucket": args.bucket, "rounds": args.rounds}  # fmt: skip
    report["matmul_peak_gflops"] = matmul_peak(device) / 1e9
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        if args.encoder.startswith("random:"):
            words = sorted({w for posts in splits.values() for p in posts for w in p.tokens})
            args.encoder = str(random_encoder(work / "encoder", args.encoder.removeprefix("random:"), words))
        report["encoder"] = args.encoder
        images = sorted({p.image for posts in data.values() for p in posts if p.image is not None})
        cache = write_random_cache(work / f"{args.dataset}_resnet152.h5", images)
        features, _ = open_features(cache, args.data_root, args.dataset)
        models = {}
        for name in args.models.split(","):
            bench = Bench(name, args, data, vocab, features, device)
            batches = bench.batches()
            fulls, bares = [], []
            for round_index in range(args.rounds):
                fulls.append(bench.full_epoch(work / f"run-{name}-{round_index}"))
                bares.append(bench.bare_epoch(batches))
            full, bare = statistics.median(fulls), statistics.median(bares)
            flops = bench.flops(batches)
            read, collate = bench.input_costs(batches)
            models[name] = {
                "step_ms": 1000 * full / len(batches),
                "bare_step_ms": 1000 * bare / len(batches),
                "full_over_bare": full / bare,
                "cache_read_share": read / full,
                "collate_share": collate / full,
                "gflops_per_step": flops / len(batches) / 1e9,
                "mfu": flops / full / (report["matmul_peak_gflops"] * 1e9),
                "padding_efficiency": bench.padding_efficiency(batches),
                "train_sentences_per_s": len(bench.train) / full,
                "predict_sentences_per_s": bench.predict_rate(),
            }
            console.print(f"{name}: {json.dumps({k: round(v, 4) for k, v in models[name].items()})}")
        features.close()
    report["models"] = models
    if "umt" in models and "bert-crf" in models:
        report["umt_over_bert_crf"] = {
            "time": models["umt"]["step_ms"] / models["bert-crf"]["step_ms"],
            "bare_time": models["umt"]["bare_step_ms"] / models["bert-crf"]["bare_step_ms"],
            "flops": models["umt"]["gflops_per_step"] / models["bert-crf"]["gflops_per_step"],
        }
    if args.extract_images:
        report["extraction"] = _extraction(args.extract_images, args.device)
    report["peak_rss_mb"] = peak_rss_mb()
    _table(console, report)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


def _extraction(count: int, device: str) -> dict:
    """Stage one's bare backbone rate against the whole command's (see bench_extract)."""
    from bench_extract import bare_rate, full_rates, predecode, write_photos

    from umt.pipeline.vision.backbones import get_backbone
    from umt.stages.requests import ExtractRequest

    dev = resolve_device(device)
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        write_photos(folder, count, 0)
        resnet152 = get_backbone("resnet152")
        bare = bare_rate(
            resnet152.build("random").to(dev), predecode(folder, 16, dev, resnet152.resize), "float16", dev
        )
        request = ExtractRequest(images=folder, out=Path(tmp) / "f.h5", weights="random", device=device, batch_size=16)
        steady, end_to_end = full_rates(request)
    return {"images": count, "bare_img_per_s": bare, "full_img_per_s": steady, "end_to_end_img_per_s": end_to_end,
            "full_over_bare": steady / bare}  # fmt: skip


def _table(console: Console, report: dict) -> None:
    title = (
        f"{report['dataset']}, {report['steps']} steps of {report['batch_size']} on {report['device']} "
        f"({report['threads']} threads, precision {report['precision']}, bucket {report['bucket']}); matmul peak "
        f"{report['matmul_peak_gflops']:.1f} GFLOP/s; peak RSS {report['peak_rss_mb']:.0f} MiB"
    )
    table = Table(title=title, title_justify="left")
    columns = ("model", "step ms", "bare ms", "full/bare", "cache read", "collate", "GFLOP/step", "MFU",
               "padding eff.", "train sent/s", "predict sent/s")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for name, m in report["models"].items():
        table.add_row(
            name, f"{m['step_ms']:.0f}", f"{m['bare_step_ms']:.0f}", f"{m['full_over_bare']:.3f}",
            f"{100 * m['cache_read_share']:.1f}%", f"{100 * m['collate_share']:.1f}%", f"{m['gflops_per_step']:.1f}",
            f"{100 * m['mfu']:.1f}%", f"{100 * m['padding_efficiency']:.0f}%", f"{m['train_sentences_per_s']:.1f}",
            f"{m['predict_sentences_per_s']:.1f}",
        )  # fmt: skip
    console.print(table)
    if "umt_over_bert_crf" in report:
        r = report["umt_over_bert_crf"]
        console.print(f"umt / bert-crf: time {r['time']:.2f} (bare {r['bare_time']:.2f}), FLOPs {r['flops']:.2f}")
    if "extraction" in report:
        e = report["extraction"]
        console.print(
            f"extraction ({e['images']} images): bare {e['bare_img_per_s']:.2f} img/s, full "
            f"{e['full_img_per_s']:.2f} img/s ({e['full_over_bare']:.3f} x bare), "
            f"end to end {e['end_to_end_img_per_s']:.2f}"
        )


if __name__ == "__main__":
    main()
