"""``umt demo``: the whole pipeline on a generated sample, offline, in a few minutes on a CPU.

1. Generate the synthetic multimodal sample (``pipeline.data.synthetic``): posts in the
   Twitter format plus real image files, where the image alone decides the type of some names.
2. Run stage one on its images with a ResNet-152 whose weights are RANDOM (no pretrained
   weights can be downloaded offline), into an HDF5 cache.
3. Build a tiny random-initialised BERT and tokenizer locally (``umt.pipeline.models.tiny``).
4. Train ``bert-crf``, ``mt`` and ``umt`` with the same settings and print their test scores
   side by side, plus the F1 on the entities whose type only the image reveals.

What the comparison can and cannot show is printed with the table: the encoder knows no
language and the visual features come from an untrained network, so the numbers say whether
the multimodal models can read a visual cue that survives a random ResNet, not how UMT does
on real tweets (docs/results.md has measured results for that).
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from umt.pipeline.data.layout import load_dataset
from umt.pipeline.labels import bio_to_spans
from umt.pipeline.metrics import PRIMARY, pct
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.report.predictions import read_predictions
from umt.pipeline.run_dir import RunDir
from umt.pipeline.train_config import TrainConfig
from umt.stages import extract_images, train
from umt.stages.requests import DemoRequest, ExtractRequest, TrainRequest
from umt.stages.tables import comparison_table

DATASET = "synth"
MODELS = ("bert-crf", "mt", "umt")


def _image_decided_f1(gold_posts, predictions, names: set[str]) -> float:
    """Entity F1 restricted to gold/predicted entities whose words are image-decided names."""
    tp = n_gold = n_pred = 0
    for post, pred in zip(gold_posts, predictions, strict=True):

        def pick(tags, tokens=post.tokens):
            return {s for s in bio_to_spans(tags) if " ".join(tokens[s[1] : s[2]]) in names}

        gold, guess = pick(post.labels), pick(pred)
        tp += len(gold & guess)
        n_gold += len(gold)
        n_pred += len(guess)
    if tp == 0:
        return 0.0
    precision, recall = tp / n_pred, tp / n_gold
    return 2 * precision * recall / (precision + recall)


def run(cfg: DemoRequest, console: Console | None = None) -> dict[str, dict]:
    from umt.pipeline.data.synthetic import AMBIGUOUS_NAMES, generate_synthetic, sample_words
    from umt.pipeline.models.tiny import build_tiny_encoder

    console = console or Console()
    started = time.perf_counter()
    data_root = cfg.out / "data"
    console.rule("[bold]1. synthetic sample")
    generate_synthetic(data_root, DATASET, seed=cfg.seed)
    splits = load_dataset(data_root, DATASET)
    console.print(escape(f"{data_root / DATASET}: " + ", ".join(f"{len(v)} {k}" for k, v in splits.items())))

    console.rule("[bold]2. extract-images (ResNet-152, random weights)")
    cache_path = data_root / f"{DATASET}_resnet152.h5"
    extract_images.run(
        ExtractRequest(
            dataset=DATASET,
            data_root=data_root,
            out=cache_path,
            weights="random",
            batch_size=cfg.extract_batch_size,
            num_workers=cfg.num_workers,
            dtype="float32",  # an untrained ResNet's activations (~1e7) do not fit float16
        ),
        console=console,
    )

    console.rule("[bold]3. tiny encoder")
    encoder = build_tiny_encoder(
        cfg.out / "tiny-encoder",
        sample_words(splits),
        hidden=cfg.hidden,
        layers=cfg.layers,
        heads=cfg.heads,
        seed=cfg.seed,
    )
    console.print(escape(f"random-initialised BERT ({cfg.layers} layers, hidden {cfg.hidden}) at {encoder}"))

    results: dict[str, dict] = {}
    for name in MODELS:
        console.rule(f"[bold]4. train {name}")
        request = TrainRequest(
            dataset=DATASET,
            model=name,
            data_root=data_root,
            model_cfg=ModelConfig(encoder=str(encoder), heads=cfg.heads),
            train_cfg=TrainConfig(
                epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed + 1, standardize_visual=True
            ),
            out=cfg.out / "runs" / name,
            features=cache_path,
            resume=not cfg.fresh,
            overwrite=cfg.fresh,
        )
        (metrics,) = train.run(request, console=console)
        results[name] = metrics

    test_posts = splits["test"]
    names = set(AMBIGUOUS_NAMES)
    extra = Table()
    extra.add_column("model")
    extra.add_column("test F1 on the entities whose type only the image tells", justify="right")
    for name in MODELS:
        pred = read_predictions(cfg.out / "runs" / name / RunDir.PREDICTIONS).pred
        extra.add_row(name, pct(_image_decided_f1(test_posts, pred, names)))
    console.rule("[bold]results")
    console.print(comparison_table([(n, results[n]) for n in MODELS], "test split, entity-level (seqeval default)"))
    console.print(extra)
    weights = RunDir(cfg.out / "runs" / "mt").config().cache["manifest"].get("weights", {})
    console.print(
        f"Visual features: ResNet-152 with {weights.get('source', weights)} weights (untrained: no pretrained weights "
        "offline), standardised per channel with training-set statistics.\n"
        "Encoder: a tiny random-initialised BERT. The scores measure whether a model uses a visual cue that "
        "survives an untrained ResNet, not real-tweet quality.\n"
        f"Dev F1 (model selection): "
        + ", ".join(f"{n} {pct(results[n]['valid'][PRIMARY]['f1'])}" for n in MODELS)
        + f"\nTotal time {time.perf_counter() - started:.0f}s; runs in {escape(str(cfg.out / 'runs'))}"
    )
    return results
