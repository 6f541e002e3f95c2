"""Trainer, run directory and evaluation: end to end on a tiny generated dataset, offline."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import FILLER, PEOPLE

from umt.cli import parse_overrides
from umt.pipeline.batch import Batch
from umt.pipeline.data.batching import Collator, MnerDataset
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError, UmtError
from umt.pipeline.inference.windows import decode_windows, merge_windows
from umt.pipeline.labels import LabelVocab
from umt.pipeline.metrics import score
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.run_dir import RunDir
from umt.pipeline.text.subword import SubwordTextSide
from umt.pipeline.text.words import WordTextSide
from umt.pipeline.train_config import TrainConfig
from umt.stages import evaluate, train
from umt.stages.requests import EvalRequest, TrainRequest


def _request(root: Path, encoder: Path, out: Path, model: str = "bert-crf", epochs: int = 3, **kw) -> TrainRequest:
    return TrainRequest(
        dataset="tiny",
        model=model,
        data_root=root,
        model_cfg=ModelConfig(encoder=str(encoder), heads=4),
        train_cfg=TrainConfig(epochs=epochs, batch_size=8, lr=2e-3, warmup=0.0, seed=3),
        out=out,
        **kw,
    )


def test_metrics_default_and_strict_schemes():
    gold = [["B-PER", "I-PER", "O", "I-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC"]]
    scores = score(gold, pred)
    assert scores["default"]["f1"] == 1.0  # I-LOC after O opens an entity, as conlleval reads it
    assert scores["default"]["support"] == 2
    assert scores["strict_iob2"]["support"] == 1  # strict IOB2 ignores the orphan I-
    assert scores["strict_iob2"]["precision"] == 0.5
    assert scores["default"]["per_type"]["LOC"]["f1"] == 1.0
    with pytest.raises(ValueError):
        score([["O", "O"]], [["O"]])


def test_overrides_are_typed_and_checked():
    overrides = parse_overrides(["esd_weight=0.3", "epochs=2", "conversion_trainable=false"])
    assert overrides == {"model": {"esd_weight": 0.3, "conversion_trainable": False}, "train": {"epochs": 2}}
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_overrides(["no_such_thing=1"])
    with pytest.raises(ConfigError, match="expected an int"):
        parse_overrides(["epochs=many"])
    with pytest.raises(ConfigError, match="expected true or false"):
        parse_overrides(["crf=maybe"])


class _PositionTagger(torch.nn.Module):
    """Decodes word j of a post as label (j mod K): a merge bug shows up as a wrong label."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def decode(self, batch: Batch) -> list[list[int]]:
        counts = batch.word_mask.sum(1).tolist()
        return [[(ref.place.offset + i) % self.k for i in range(n)] for ref, n in zip(batch.refs, counts, strict=True)]


@pytest.mark.parametrize("side", ["subword", "words"])
def test_long_posts_get_one_prediction_per_word(tiny_encoder_dir, side):
    """Both text sides cut a post longer than max_length (pieces, or words) into windows."""
    rng = random.Random(1)
    posts = [Post([rng.choice(FILLER + PEOPLE) for _ in range(n)], None, None) for n in (3, 40, 95, 7)]
    posts[1].tokens[5] = "\u200b"  # a word with no sub-word pieces still gets a tag
    window = {"max_length": 24, "stride": 6}
    if side == "subword":
        text = SubwordTextSide.create(ModelConfig(encoder=str(tiny_encoder_dir), **window), [])
    else:
        text = WordTextSide.create(ModelConfig(word_vectors="random", **window), posts)
    vocab = LabelVocab.from_types(["PER", "LOC"])
    dataset = MnerDataset(posts, text, vocab)
    assert len(dataset) > len(posts)  # the long posts really were split into windows
    assert max(w.positions for p in posts for w in text.windows(p.tokens)) <= 24
    loader = torch.utils.data.DataLoader(dataset, batch_size=5, collate_fn=Collator(text, None))
    tags = merge_windows([len(p) for p in posts], decode_windows(_PositionTagger(len(vocab)), loader, vocab, "cpu"))
    for post, row in zip(posts, tags, strict=True):
        assert row == [vocab.labels[j % len(vocab)] for j in range(len(post.tokens))]


def test_train_writes_a_run_that_reloads_to_the_same_scores(tiny_root, tiny_encoder_dir, tmp_path):
    run = tmp_path / "run"
    (metrics,) = train.run(_request(tiny_root, tiny_encoder_dir, run, epochs=4))
    for name in ("config.json", "labels.json", "model.safetensors", "metrics.json", "log.jsonl", "env.json"):
        assert (run / name).is_file(), name
    assert (run / "text" / "config.json").is_file()
    assert not (run / "last.pt").exists()  # removed once the run is finished
    assert metrics["test"]["default"]["f1"] > 0.5  # the tiny task is learnable in a few epochs
    conll = (run / "predictions_test.conll").read_text().strip().split("\n\n")
    assert len(conll) == 12
    again = evaluate.run(EvalRequest(run, split="test"))
    assert again["default"] == metrics["test"]["default"]
    assert again["strict_iob2"] == metrics["test"]["strict_iob2"]
    with pytest.raises(ConfigError, match="already holds a run"):
        train.run(_request(tiny_root, tiny_encoder_dir, run))


def test_resume_equals_uninterrupted(tiny_root, tiny_encoder_dir, tmp_path):
    full = train.run(_request(tiny_root, tiny_encoder_dir, tmp_path / "full", model="umt", no_images=True))[0]
    partial = tmp_path / "partial"
    assert (
        train.run(
            _request(tiny_root, tiny_encoder_dir, partial, model="umt", no_images=True),
            stop_after_epoch=lambda e: e == 0,
        )
        == []
    )
    assert (partial / "last.pt").is_file() and not (partial / "metrics.json").exists()
    resumed = train.run(_request(tiny_root, tiny_encoder_dir, partial, model="umt", no_images=True, resume=True))[0]
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    a = RunDir(tmp_path / "full").best_weights()
    b = RunDir(partial).best_weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_multimodal_model_without_a_cache_points_to_extract_images(tiny_root, tiny_encoder_dir, tmp_path):
    with pytest.raises(ConfigError, match="extract-images"):
        train.run(_request(tiny_root, tiny_encoder_dir, tmp_path / "mm", model="mt", epochs=1))


def test_several_seeds_write_one_run_each_and_a_summary(tiny_root, tiny_encoder_dir, tmp_path):
    request = replace(_request(tiny_root, tiny_encoder_dir, tmp_path / "seeds", epochs=1), seeds=(1, 2))
    results = train.run(request)
    assert [m["seed"] for m in results] == [1, 2]
    summary = RunDir(tmp_path / "seeds").read_json("summary.json")
    f1s = [m["test"]["default"]["f1"] for m in results]
    assert summary["test_f1"]["values"] == f1s
    assert summary["test_f1"]["mean"] == pytest.approx(sum(f1s) / 2)
    for seed in ("seed1", "seed2"):
        assert (tmp_path / "seeds" / seed / "model.safetensors").is_file()


def test_training_data_without_labels_is_refused_at_its_line(tiny_encoder_dir, tmp_path):
    folder = tmp_path / "data" / "mixed"
    folder.mkdir(parents=True)
    labelled = '{"tokens": ["Anna", "visits", "Paris"], "labels": ["B-PER", "O", "B-LOC"]}\n'
    (folder / "train.jsonl").write_text(labelled + '{"tokens": ["so", "happy"]}\n' + labelled)
    (folder / "valid.jsonl").write_text(labelled)
    (folder / "test.jsonl").write_text(labelled)
    request = replace(_request(tmp_path / "data", tiny_encoder_dir, tmp_path / "run", epochs=1), dataset="mixed")
    with pytest.raises(UmtError, match=r"train\.jsonl:2: post has no labels"):
        train.run(request)


def test_sgd_with_the_inverse_time_schedule_of_ma_and_hovy():
    from umt.pipeline.training.optim import make_optimizer

    model = torch.nn.Linear(2, 2)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, head_lr=0.0, momentum=0.9, schedule="inverse", lr_decay=0.5, epochs=3)
    optimizer, scheduler = make_optimizer(model, cfg, steps_per_epoch=3)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    rates = []
    for _ in range(9):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([0.1] * 3 + [0.1 / 1.5] * 3 + [0.1 / 2.0] * 3)
    adamw, linear = make_optimizer(model, TrainConfig(lr=0.1, warmup=0.5, epochs=2), steps_per_epoch=2)
    assert isinstance(adamw, torch.optim.AdamW)
    assert [linear.lr_lambdas[0](s) for s in range(4)] == pytest.approx([0.5, 1.0, 1.0, 0.5])


def test_a_recipes_defaults_fill_what_the_user_did_not_set():
    from umt.pipeline.models.catalog import get_recipe
    from umt.stages.requests import TrainRequest

    recipe = get_recipe("cnn-bilstm-crf")
    model_cfg, train_cfg = recipe.defaulted(ModelConfig(lstm_hidden=7), TrainConfig(lr=0.5), frozenset({"lr"}))
    assert train_cfg.lr == 0.5 and train_cfg.optimizer == "sgd" and train_cfg.batch_size == 10  # lr given
    assert model_cfg.lstm_hidden == 200 and model_cfg.dropout == 0.5  # not given: the recipe's values
    # a request built in Python counts what differs from the dataclass defaults as given
    request = TrainRequest(
        dataset="d",
        model="m",
        data_root=Path("."),
        train_cfg=TrainConfig(lr=0.5, seed=4),
        model_cfg=ModelConfig(lstm_hidden=7),
    )
    assert request.explicit == {"lr", "seed", "lstm_hidden"}
    model_cfg, train_cfg = recipe.defaulted(request.model_cfg, request.train_cfg, request.explicit)
    assert (model_cfg.lstm_hidden, train_cfg.lr, train_cfg.epochs) == (7, 0.5, 50)
    assert get_recipe("bert-crf").defaulted(ModelConfig(), TrainConfig(), frozenset()) == (ModelConfig(), TrainConfig())


def test_parameters_trained_from_scratch_get_their_own_rate(tiny_encoder_dir):
    from umt.pipeline.labels import LabelVocab
    from umt.pipeline.models.catalog import get_recipe
    from umt.pipeline.training.optim import param_groups

    vocab = LabelVocab.from_sequences([["B-PER", "O", "B-LOC"]])
    recipe, cfg = get_recipe("umt"), ModelConfig(encoder=str(tiny_encoder_dir), heads=4)
    text = recipe.text_side().create(cfg, [])
    model = recipe.build(cfg, vocab, text)
    encoder = {id(p) for p in model.encoder.parameters()}
    groups = param_groups(model, TrainConfig(lr=5e-5, head_lr=1e-3))
    rates = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(rates) == sum(1 for p in model.parameters() if p.requires_grad)  # each parameter once
    assert {rates[i] for i in encoder} == {5e-5}
    assert {rate for i, rate in rates.items() if i not in encoder} == {1e-3}
    assert any(p is model.head.crf.transitions for g in groups if g["lr"] == 1e-3 for p in g["params"])
    same = param_groups(model, TrainConfig(lr=5e-5, head_lr=0.0))
    assert {g["lr"] for g in same} == {5e-5}
    assert get_recipe("bilstm-crf").defaults["head_lr"] == 0.0  # the BiLSTM recipes keep one rate


def test_schedules_after_the_warm_up():
    from umt.pipeline.training.optim import make_optimizer

    model = torch.nn.Linear(2, 2)
    factors = {
        name: [make_optimizer(model, TrainConfig(schedule=name, warmup=0.25, epochs=1), 8)[1].lr_lambdas[0](s)
               for s in range(8)]
        for name in ("linear", "cosine", "constant")
    }  # fmt: skip
    for values in factors.values():
        assert values[:2] == pytest.approx([0.5, 1.0])  # 2 warm-up steps
    assert factors["constant"][2:] == pytest.approx([1.0] * 6)
    assert factors["linear"][2:] == pytest.approx([1.0, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6])
    assert factors["cosine"][2:5] == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 6)), 0.75])


def test_patience_stops_a_run_whose_dev_score_stopped_rising(tiny_root, tiny_encoder_dir, tmp_path, one_thread):
    still = {"lr": 1e-12, "head_lr": 1e-12, "patience": 1}  # the weights barely move: dev F1 never rises
    request = _request(tiny_root, tiny_encoder_dir, tmp_path / "run", epochs=4)
    request = replace(request, train_cfg=replace(request.train_cfg, **still))
    (metrics,) = train.run(request)
    events = RunDir.open(tmp_path / "run").events()
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    assert [e for e in events if e["event"] == "early_stop"][0]["best_epoch"] == 1
    assert metrics["best_epoch"] == 1


def test_precision_choices_and_runs_that_stored_amp():
    from umt.pipeline.heads.emissions import EmissionLayer
    from umt.pipeline.runtime.precision import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu).name == "fp32" and resolve_precision("bf16", cpu).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp8")
    assert TrainConfig.from_dict({"amp": True}).precision == "auto"
    assert TrainConfig.from_dict({"amp": False}).precision == "fp32"
    layer = EmissionLayer(8, 3, 0.0)
    with resolve_precision("bf16", cpu).autocast():
        assert layer(torch.randn(2, 4, 8)).dtype == torch.float32  # the CRF's scores stay fp32
        assert torch.nn.Linear(8, 3)(torch.randn(2, 8)).dtype == torch.bfloat16  # autocast is on


def test_weight_decay_skips_what_the_modules_declare_not_what_they_are_called(tiny_encoder_dir):
    """W^c is exempt because its module says so: under any attribute name, in every BERT model."""
    from umt.pipeline.heads.conversion import LabelConversion, conversion_matrix
    from umt.pipeline.labels import LabelVocab
    from umt.pipeline.models.catalog import get_recipe, model_names
    from umt.pipeline.training.optim import param_groups

    vocab = LabelVocab.from_sequences([["B-PER", "O", "B-LOC"]])
    cfg = TrainConfig(weight_decay=0.01)
    for name in model_names():
        recipe = get_recipe(name)
        if recipe.text_side().kind != "subword":
            continue
        model_cfg = ModelConfig(encoder=str(tiny_encoder_dir), heads=4)
        model = recipe.build(model_cfg, vocab, recipe.text_side().create(model_cfg, []))
        decayed = {id(p) for g in param_groups(model, cfg) if g["weight_decay"] for p in g["params"]}
        expected = {id(p) for p in model.parameters() if p.ndim >= 2} - (
            {id(model.conversion.matrix)} if model.conversion is not None else set()
        )
        assert decayed == expected, name
        assert (model.conversion is not None) == (name not in ("bert-softmax", "bert-crf", "gvatt-bert-crf",
                                                               "adacan-bert-crf", "mt", "umt-no-esd",
                                                               "umt-no-conversion"))  # fmt: skip

    renamed = torch.nn.Module()
    renamed.linear = torch.nn.Linear(3, 3)
    renamed.w_c = LabelConversion(conversion_matrix(vocab), trainable=True, mix="sum")
    decayed = [p for g in param_groups(renamed, cfg) if g["weight_decay"] for p in g["params"]]
    assert len(decayed) == 1 and decayed[0] is renamed.linear.weight
