"""Tagging new posts: the tweet tokenizer's offsets, entity probabilities against brute force,
valid BIO, and `umt predict` end to end on a tiny trained UMT whose images go through the real
(random-weight) ResNet-152, on the fly and from the cache alike."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import IMAGED_IDS, build_imaged_run
from PIL import Image

import umt
from umt.cli import main
from umt.pipeline.batch import Placement, WindowRef
from umt.pipeline.data.batching import Collator, cut_by_length
from umt.pipeline.data.layout import load_split
from umt.pipeline.data.new_posts import BadLine, read_new_posts
from umt.pipeline.heads.crf import CRFHead, Entity
from umt.pipeline.heads.softmax import SoftmaxHead
from umt.pipeline.inference.entities import tag_batches
from umt.pipeline.labels import LabelVocab, bio_to_spans
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.modules.encoders import PretrainedEncoder
from umt.pipeline.packing import first_fit
from umt.pipeline.text.tweets import detect_style, tokenize
from umt.pipeline.train_config import TrainConfig
from umt.pipeline.vision.backbones import get_backbone
from umt.stages import predict, train
from umt.stages.requests import PredictRequest, TrainRequest

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- the tokenizer ------------------------------------------------------------------------------

TEXTS = [
    "RT @JayKenMinaj_: Me outside of where George Zimmerman got shot at. http://t.co/Z3neVBQ7vF.",
    "It's 7:30pm, #NBAFinals tonight!! 3.5 pts 👩‍👩‍👧 ⚾️👍🏽 see www.nba.com/finals?x=1) ok",
    "Paris Paris  Paris\tParis\u00a0Paris \u200b Paris",
    "can't won't y'all — “quoted” (parens) [x] ... :-) ;D <3 Note:Data",
    "Anna in Paris🇫🇷🇩🇪 🇫 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f! 🇫🇷👩\u200d👩\u200d👧 ok",
]
#: Scotland's flag: the black flag, the tag characters "gbsct" and the cancel tag.
SCOTLAND = "\U0001f3f4" + "".join(chr(0xE0000 + ord(c)) for c in "gbsct") + "\U000e007f"


@pytest.mark.parametrize("style", ["tweet", "tweet-split"])
@pytest.mark.parametrize("text", TEXTS)
def test_every_token_is_the_slice_of_the_text_its_offsets_name(text, style):
    tokens = tokenize(text, style)
    assert tokens and all(text[t.start : t.end] == t.text for t in tokens)
    assert all(a.end <= b.start for a, b in itertools.pairwise(tokens))
    covered = set().union(*(range(t.start, t.end) for t in tokens))
    assert all(text[i].isspace() or text[i] in "\u200b" for i in range(len(text)) if i not in covered)


def test_urls_mentions_hashtags_emoji_and_contractions_follow_the_datasets():
    words = [t.text for t in tokenize(TEXTS[1])]
    assert words[:3] == ["It", "'", "s"]  # both datasets split at the apostrophe
    assert ["7", ":", "30pm"] == words[3:6] and "3.5" in words
    assert "#NBAFinals" in words and "👩\u200d👩\u200d👧" in words and "⚾️" in words and "👍🏽" in words
    assert "www.nba.com/finals?x=1" in words and words[-2:] == [")", "ok"]  # trailing ")" is not the URL's
    first = [t.text for t in tokenize(TEXTS[0])]
    assert first[1] == "@JayKenMinaj_" and first[-2:] == ["http://t.co/Z3neVBQ7vF", "."]
    assert [t.text for t in tokenize(TEXTS[3])][-7:] == [".", ":-)", ";D", "<3", "Note", ":", "Data"]
    split = [t.text for t in tokenize(TEXTS[1], "tweet-split")]
    assert split[split.index("#") + 1] == "NBAFinals"
    paris = tokenize(TEXTS[2])
    assert [t.text for t in paris] == ["Paris"] * 6
    assert len({t.start for t in paris}) == 6  # repeated words keep their own offsets


def test_a_flag_is_one_token_and_two_flags_are_two():
    def words(text: str) -> list[str]:
        return [t.text for t in tokenize(text)]

    assert words("🇫🇷") == ["🇫🇷"] and words("🇫🇷🇩🇪") == ["🇫🇷", "🇩🇪"]  # paired from the left
    assert words("🇫") == ["🇫"] and words("🇫🇷🇩") == ["🇫🇷", "🇩"]  # a lone letter is a token of its own
    assert words(f"go {SCOTLAND}!") == ["go", SCOTLAND, "!"] and len(SCOTLAND) == 7
    assert words("🇫🇷👩\u200d👩\u200d👧") == ["🇫🇷", "👩\u200d👩\u200d👧"]  # beside a ZWJ sequence
    assert words("👍🏽🇫🇷⚾️") == ["👍🏽", "🇫🇷", "⚾️"]
    flags = tokenize(TEXTS[4])
    assert [t.text for t in flags] == [
        "Anna", "in", "Paris", "🇫🇷", "🇩🇪", "🇫", SCOTLAND, "!", "🇫🇷", "👩\u200d👩\u200d👧", "ok",
    ]  # fmt: skip
    assert all(TEXTS[4][t.start : t.end] == t.text for t in flags)
    assert [t.text for t in tokenize(TEXTS[4], "tweet-split")] == [t.text for t in flags]


def test_the_style_of_a_dataset_is_detected_from_its_words():
    assert detect_style(["#", "NBA", ":", "@", "warriors", "#NBAFinals"]) == "tweet-split"
    assert detect_style(["RT", "@cnni", ":", "#NWM7", "#"]) == "tweet"


def test_bad_lines_are_reported_with_their_numbers_and_reading_goes_on():
    lines = [
        '{"text": "Kevin Durant in Oakland", "id": 7}\n',
        "\n",
        '{"text": broken\n',
        '{"image": "a.jpg"}\n',
        '{"tokens": ["Kevin", "Durant"], "text": "Kevin  Durant!"}\n',
        '{"tokens": ["x"], "text": "y"}\n',
        '["a list"]\n',
        '{"tokens": "Kevin Durant"}\n',
    ]
    out = list(read_new_posts(lines, "jsonl", "tweet"))
    kinds = ["NewPost", "BadLine", "BadLine", "NewPost", "BadLine", "BadLine", "BadLine"]
    assert [type(x).__name__ for x in out] == kinds
    assert [x.line for x in out if isinstance(x, BadLine)] == [3, 4, 6, 7, 8]
    assert out[0].id == "7" and out[0].tokens == ["Kevin", "Durant", "in", "Oakland"]
    assert out[3].offsets == [(0, 5), (7, 13)]  # given tokens located in the given text
    csv_rows = ["id,text,image\n", "1,Kevin Durant in Oakland,\n", "2,,x.jpg\n"]
    parsed = list(read_new_posts(csv_rows, "csv", "tweet"))
    assert parsed[0].tokens[:2] == ["Kevin", "Durant"] and parsed[0].image is None and parsed[0].line == 2
    assert parsed[1].tokens == [] and parsed[1].image == "x.jpg"  # an empty text is tagged as nothing


# ---- entity probabilities -----------------------------------------------------------------------


VOCAB = LabelVocab.from_types(["LOC", "PER"])  # O B-LOC I-LOC B-PER I-PER
#: Entities over 5 words: every start and end position, both types, the first and last word.
ENTITIES = [
    Entity(s, e, VOCAB.index(f"B-{t}"), VOCAB.index(f"I-{t}"))
    for s, e, t in [(0, 1, "PER"), (0, 2, "LOC"), (1, 3, "PER"), (2, 5, "LOC"), (4, 5, "PER"), (3, 4, "LOC")]
]


def _brute_force(log_score, n: int, entity: Entity) -> float:
    """P(entity) by enumerating every tag sequence and reading its entities as the scores do."""
    entity_type = VOCAB.labels[entity.begin][2:]
    total = hit = 0.0
    every = list(itertools.product(range(len(VOCAB)), repeat=n))
    scores = [float(log_score(y).detach()) for y in every]
    top = max(scores)  # probabilities relative to the best sequence: extreme scores do not overflow
    for y, score in zip(every, scores, strict=True):
        p = math.exp(score - top)
        total += p
        if (entity_type, entity.start, entity.end) in bio_to_spans(VOCAB.decode(y)):
            hit += p
            assert entity.holds(y)
        else:
            assert not entity.holds(y)
    return hit / total


@pytest.mark.parametrize("spread", [1.0, 30.0, 2000.0])  # 2000: scores too far apart to multiply
def test_crf_entity_probabilities_are_the_marginals_brute_force_enumeration_gives(spread):
    torch.manual_seed(0)
    head = CRFHead(len(VOCAB))
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(std=spread)
    emissions = torch.randn(5, len(VOCAB)) * spread
    crf = head.crf

    def log_score(y):
        s = crf.start_transitions[y[0]] + emissions[0, y[0]] + crf.end_transitions[y[-1]]
        return s + sum(crf.transitions[y[t - 1], y[t]] + emissions[t, y[t]] for t in range(1, len(y)))

    got = head.entity_probabilities(emissions, ENTITIES)
    for entity, value in zip(ENTITIES, got, strict=True):
        assert value == pytest.approx(_brute_force(log_score, 5, entity), rel=1e-4, abs=1e-7)


def test_softmax_entity_probabilities_are_the_marginals_of_independent_words():
    emissions = torch.randn(5, len(VOCAB))

    def log_score(y):
        return sum(emissions[t].log_softmax(-1)[y[t]] for t in range(len(y)))

    got = SoftmaxHead().entity_probabilities(emissions, ENTITIES)
    for entity, value in zip(ENTITIES, got, strict=True):
        assert value == pytest.approx(_brute_force(log_score, 5, entity), rel=1e-4)


class _Fixed(torch.nn.Module):
    """A stand-in model whose emissions are given: lets a test force any decoded sequence."""

    def __init__(self, emissions: torch.Tensor):
        super().__init__()
        self.fixed = emissions
        self.head = SoftmaxHead()

    def emissions(self, batch):
        return self.fixed, None


def test_tags_are_always_valid_bio_and_entities_are_the_ones_eval_counts():
    vocab = LabelVocab.from_types(["LOC", "PER"])  # O B-LOC I-LOC B-PER I-PER
    decoded = ["I-PER", "I-PER", "O", "I-LOC", "B-PER", "I-LOC"]  # invalid BIO: an I- after O or another type
    emissions = torch.full((1, 6, len(vocab)), -5.0)
    for i, tag in enumerate(decoded):
        emissions[0, i, vocab.index(tag)] = 5.0
    batch = SimpleNamespace(refs=[WindowRef(0, Placement(0, 0, 6))], word_mask=torch.ones(1, 6, dtype=torch.bool))
    batch.to = lambda device: batch
    text = "Kevin Durant in Oakland Steph Ca"
    offsets = [(0, 5), (6, 12), (13, 15), (16, 23), (24, 29), (30, 32)]
    cpu = torch.device("cpu")
    (tagged,) = tag_batches(_Fixed(emissions), [batch], [6], [text], [offsets], [text.split()], vocab, cpu)
    assert tagged.tags == ["B-PER", "I-PER", "O", "B-LOC", "B-PER", "B-LOC"]
    assert [(e["entity_group"], e["word"]) for e in tagged.entities] == [
        ("PER", "Kevin Durant"),
        ("LOC", "Oakland"),
        ("PER", "Steph"),
        ("LOC", "Ca"),
    ]
    assert [(t, s, e) for t, s, e in bio_to_spans(decoded)] == [
        (e["entity_group"], e["token_start"], e["token_end"]) for e in tagged.entities
    ]
    # the model is sure of every tag, so of every entity, those its I- tags open included
    assert all(0.99 < e["score"] <= 1.0 for e in tagged.entities)


# ---- umt predict on a trained run ---------------------------------------------------------------

IMAGED = IMAGED_IDS


@pytest.fixture(scope="module")
def imaged_run(tiny_root, tiny_encoder_dir, tmp_path_factory) -> dict:
    """A UMT trained on the tiny dataset with a few real image files whose grids the random
    ResNet-152 computed (the others absent): the same settings a real extraction records."""
    built = build_imaged_run(tmp_path_factory.mktemp("predict"), tiny_root, tiny_encoder_dir)
    base, run, cache, images = built["base"], built["run"], built["cache"], built["images"]
    posts = load_split(tiny_root, "tiny", "test")[:4]
    lines = [
        json.dumps(
            {"text": " ".join(p.tokens), "image": f"{p.image}.png" if p.image in IMAGED else None, "id": p.image}
        )
        for p in posts
    ]
    lines.insert(2, '{"text": "Great to see Anna in Paris", "image": "gone.jpg"}')  # line 3: a missing image
    lines.insert(3, "{not json")  # line 4
    inputs = base / "posts.jsonl"
    inputs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"run": run, "cache": cache, "images": images, "inputs": inputs, "posts": posts, "base": base}


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_predict_computes_images_as_the_cache_did_and_caches_them_by_content(imaged_run, tmp_path, capsys):
    r = imaged_run
    request = {"run": r["run"], "input": r["inputs"], "images": r["images"], "image_cache": tmp_path / "grids"}
    first = predict.run(PredictRequest(**request, output=tmp_path / "a.jsonl"))
    assert first["posts"] == 4 and first["bad_lines"] == 2 and first["images_computed"] == 3
    second = predict.run(PredictRequest(**request, output=tmp_path / "b.jsonl"))
    assert second["images_computed"] == 0  # every grid came from the content-hash cache
    on_the_fly = _read(tmp_path / "a.jsonl")
    assert on_the_fly == _read(tmp_path / "b.jsonl")
    assert [o["line"] for o in on_the_fly] == [1, 2, 5, 6]

    # the same posts by image id through the run's own cache: the same tags, the same probabilities
    lines = [
        json.dumps(
            {"text": o["text"], "image": o["image"].removesuffix(".png")} if "image" in o else {"text": o["text"]}
        )
        for o in on_the_fly
    ]
    by_id = tmp_path / "by_id.jsonl"
    by_id.write_text("\n".join(lines) + "\n", encoding="utf-8")
    predict.run(PredictRequest(r["run"], input=by_id, features=r["cache"], output=tmp_path / "c.jsonl"))
    cached = _read(tmp_path / "c.jsonl")
    assert [c["tags"] for c in cached] == [o["tags"] for o in on_the_fly]
    for c, o in zip(cached, on_the_fly, strict=True):
        assert [e["score"] for e in c["entities"]] == pytest.approx([e["score"] for e in o["entities"]], abs=1e-5)

    # and the tags the run itself gave these test posts (the same words, the same grids)
    blocks = (r["run"] / "predictions_test.conll").read_text().strip().split("\n\n")[:4]
    expected = [[line.split("\t")[2] for line in block.splitlines()[1:]] for block in blocks]
    assert [o["tokens"] for o in on_the_fly] == [p.tokens for p in r["posts"]]
    assert [o["tags"] for o in on_the_fly] == expected


def test_entities_carry_offsets_into_the_text_and_valid_probabilities(imaged_run, tmp_path):
    r = imaged_run
    predict.run(
        PredictRequest(
            r["run"], input=r["inputs"], images=r["images"], image_cache=tmp_path, output=tmp_path / "out.jsonl"
        )
    )
    for record in _read(tmp_path / "out.jsonl"):
        assert len(record["tags"]) == len(record["tokens"])
        for entity in record["entities"]:
            assert record["text"][entity["start"] : entity["end"]] == entity["word"]
            assert 0.0 < entity["score"] <= 1.0
            assert record["tags"][entity["token_start"]].startswith("B-")


def test_a_bad_line_is_reported_and_strict_makes_it_an_error(imaged_run, tmp_path, capsys):
    r = imaged_run
    argv = [
        "predict",
        str(r["run"]),
        "--input",
        str(r["inputs"]),
        "--images",
        str(r["images"]),
        "--image-cache",
        str(tmp_path),
    ]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--output", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert exited.value.code == 0
    assert "posts.jsonl:3: image 'gone.jpg' not found" in err and "posts.jsonl:4: not valid JSON" in err
    assert len(_read(tmp_path / "o.jsonl")) == 4
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--output", str(tmp_path / "s.jsonl"), "--strict"])
    assert exited.value.code == 2 and "posts.jsonl:3:" in capsys.readouterr().err
    assert not (tmp_path / "s.jsonl").exists()  # only a finished output gets its name


def test_a_flag_beside_an_entity_keeps_the_entities_offsets(imaged_run):
    tagger = umt.load(imaged_run["run"], device="cpu")
    text = "Great to see Anna in Paris🇫🇷 today 🇫🇷👩\u200d👩\u200d👧 with Chloe 🇩🇪🇫🇷"
    (tagged,) = tagger.tag([text])
    assert tagged["tokens"][5:7] == ["Paris", "🇫🇷"] and tagged["tokens"][-2:] == ["🇩🇪", "🇫🇷"]
    assert "👩\u200d👩\u200d👧" in tagged["tokens"] and len(tagged["tags"]) == len(tagged["tokens"]) == 14
    assert tagged["entities"]  # the tiny model finds names here: the offsets below are checked
    for entity in tagged["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["word"]
        words = tagged["tokens"][entity["token_start"] : entity["token_end"]]
        assert entity["word"].startswith(words[0]) and entity["word"].endswith(words[-1])


def test_python_tagger_gives_the_cli_dicts_and_takes_posts_without_images(imaged_run, tmp_path):
    r = imaged_run
    predict.run(
        PredictRequest(
            r["run"], input=r["inputs"], images=r["images"], image_cache=tmp_path, output=tmp_path / "out.jsonl"
        )
    )
    records = _read(tmp_path / "out.jsonl")
    tagger = umt.load(r["run"], device="cpu")
    images = [r["images"] / o["image"] if "image" in o else None for o in records]
    got = tagger.tag([o["text"] for o in records], images=images, image_cache=tmp_path)
    assert [g["entities"] for g in got] == [o["entities"] for o in records]
    (plain,) = tagger.tag([["Great", "to", "see", "Anna", "in", "Paris"]], image_cache=tmp_path)
    assert plain["text"] == "Great to see Anna in Paris" and len(plain["tags"]) == 6


def test_a_backbone_other_than_the_runs_is_refused(imaged_run, tmp_path):
    r = imaged_run
    run = tmp_path / "run"
    import shutil

    shutil.copytree(r["run"], run)
    config = json.loads((run / "config.json").read_text())
    config["features"]["manifest"]["weights"] = {"source": "file", "sha256": "ab" * 32}
    (run / "config.json").write_text(json.dumps(config))
    request = {"input": r["inputs"], "images": r["images"], "image_cache": tmp_path / "g", "output": tmp_path / "o"}
    with pytest.raises(umt.pipeline.errors.ConfigError, match="pass that file with --weights"):
        predict.run(PredictRequest(run, **request))
    other = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(1)}, other)
    with pytest.raises(umt.pipeline.errors.ConfigError, match="not the backbone weights"):
        predict.run(PredictRequest(run, weights=str(other), **request))
    config["features"]["manifest"]["preprocessing"] = {**get_backbone("resnet152").preprocessing, "resize": [256, 256]}
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(umt.pipeline.errors.ConfigError, match="preprocessing"):
        predict.run(PredictRequest(run, **request))


def test_explain_draws_one_picture_per_entity_of_a_post_with_an_image(imaged_run, tmp_path):
    r = imaged_run
    summary = predict.run(
        PredictRequest(
            r["run"],
            input=r["inputs"],
            images=r["images"],
            image_cache=tmp_path,
            output=tmp_path / "out.jsonl",
            explain=tmp_path / "explain",
        )
    )
    records = _read(tmp_path / "out.jsonl")
    expected = sum(len(o["entities"]) for o in records if "image" in o)
    assert expected > 0 and len(summary["explained"]) == expected
    for path in summary["explained"]:
        with Image.open(path) as picture:
            assert picture.width >= 448 and picture.height > 448


def test_a_model_that_reads_no_images_ignores_them_and_cannot_explain(tiny_root, tiny_encoder_dir, tmp_path):
    run = tmp_path / "run"
    train.run(
        TrainRequest(
            dataset="tiny",
            model="bert-crf",
            data_root=tiny_root,
            out=run,
            model_cfg=ModelConfig(encoder=str(tiny_encoder_dir)),
            train_cfg=TrainConfig(epochs=1),
        )
    )
    posts = tmp_path / "posts.jsonl"
    posts.write_text('{"text": "Great to see Anna in Paris", "image": "nowhere.jpg"}\n', encoding="utf-8")
    with pytest.raises(umt.pipeline.errors.ConfigError, match="--explain needs a model that reads images"):
        predict.run(PredictRequest(run, input=posts, explain=tmp_path / "pictures"))
    summary = predict.run(PredictRequest(run, input=posts, output=tmp_path / "out.jsonl"))
    assert summary["posts"] == 1 and summary["bad_lines"] == 0  # the image is not even looked for
    devnull = Path(os.devnull)
    assert predict.run(PredictRequest(run, input=posts, output=devnull))["posts"] == 1
    assert devnull.is_char_device()  # written into, never replaced by a file


def test_a_post_longer_than_one_window_gets_every_tag_and_every_entity_a_probability(
    tiny_root, tiny_encoder_dir, tmp_path
):
    run = tmp_path / "run"
    train.run(
        TrainRequest(
            dataset="tiny",
            model="bert-crf",
            data_root=tiny_root,
            out=run,
            model_cfg=ModelConfig(encoder=str(tiny_encoder_dir), max_length=12, stride=4),
            train_cfg=TrainConfig(epochs=2, lr=2e-3, batch_size=8),
        )
    )
    trained = umt.load(run, device="cpu")
    words = "great day Anna visits Paris ! so happy Chloe visits Oslo ! we love Elena visits Perth !".split() * 2
    assert len(trained.dataset([umt.pipeline.data.types.Post(words, None, None)]).items) > 2  # several windows
    (tagged,) = trained.tag([words])
    expected = trained.predict([words])[0]
    assert bio_to_spans(tagged["tags"]) == bio_to_spans(expected)
    assert tagged["entities"] and all(0.0 < e["score"] <= 1.0 for e in tagged["entities"])

    # A run written before windowing moved from the training config to the model config (the
    # text side's) kept max_length and stride under "train": it loads with the same windows.
    import shutil

    before = tmp_path / "before-the-move"
    shutil.copytree(run, before)
    config = json.loads((before / "config.json").read_text())
    for key in ("max_length", "stride"):
        config["train"][key] = config["model_config"].pop(key)
    (before / "config.json").write_text(json.dumps(config))
    old = umt.load(before, device="cpu")
    assert (old.config.model_cfg.max_length, old.config.model_cfg.stride) == (12, 4)
    assert old.config == trained.config
    assert old.predict([words]) == trained.predict([words]) and old.tag([words]) == [tagged]


def test_a_folder_of_images_with_captions_is_an_input(imaged_run, tmp_path):
    import shutil

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, caption in (("test0", "Great to see Anna in Paris"), ("test1", "Chloe visits Oslo !"), ("test2", None)):
        shutil.copy(imaged_run["images"] / f"{name}.png", folder / f"{name}.png")
        if caption is not None:
            (folder / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
    summary = predict.run(
        PredictRequest(imaged_run["run"], input=folder, image_cache=tmp_path / "g", output=tmp_path / "out.jsonl")
    )
    assert summary["posts"] == 2 and summary["bad_lines"] == 1  # test2.png has no caption
    records = _read(tmp_path / "out.jsonl")
    assert [(r["id"], r["text"]) for r in records] == [
        ("test0.png", "Great to see Anna in Paris"),
        ("test1.png", "Chloe visits Oslo !"),
    ]


# ---- evaluation batches cut by length -----------------------------------------------------------


def _cost(lengths, cuts, call_cost):
    return sum(len(cut) * lengths[cut[0]] + call_cost for cut in cuts)


def _packed_cost(lengths, cuts, call_cost):
    return sum(len(first_fit([lengths[k] for k in cut], lengths[cut[0]])) * lengths[cut[0]] + call_cost for cut in cuts)


def _every_cut(n, max_size):
    """Every way of cutting 0..n-1 into consecutive batches of at most ``max_size``."""
    every = [
        [range(a, b) for a, b in itertools.pairwise((0, *points, n))]
        for r in range(n)
        for points in itertools.combinations(range(1, n), r)
    ]
    return [c for c in every if all(len(cut) <= max_size for cut in c)]


@pytest.mark.parametrize("seed", range(6))
def test_batches_cut_by_length_cost_what_the_best_of_every_cut_costs(seed):
    rng = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 10, (1,), generator=rng))
    lengths = sorted(torch.randint(1, 60, (n,), generator=rng).tolist(), reverse=True)
    max_size = int(torch.randint(1, 5, (1,), generator=rng))
    for call_cost in (0.0, 7.5, 54.0, 1e6):
        cuts = cut_by_length(lengths, max_size, call_cost)
        assert [k for cut in cuts for k in cut] == list(range(n))  # every window once, in order
        assert all(1 <= len(cut) <= max_size for cut in cuts)
        fitting = _every_cut(n, max_size)
        assert _cost(lengths, cuts, call_cost) == pytest.approx(min(_cost(lengths, c, call_cost) for c in fitting))


@pytest.mark.parametrize("seed", range(6))
def test_packed_batches_cut_by_length_cost_what_the_best_of_every_cut_costs(seed):
    rng = torch.Generator().manual_seed(seed)
    n = int(torch.randint(1, 10, (1,), generator=rng))
    lengths = sorted(torch.randint(1, 60, (n,), generator=rng).tolist(), reverse=True)
    max_size = int(torch.randint(1, 6, (1,), generator=rng))
    for call_cost in (0.0, 7.5, 54.0):
        cuts = cut_by_length(lengths, max_size, call_cost, packed=True)
        assert [k for cut in cuts for k in cut] == list(range(n)) and all(1 <= len(c) <= max_size for c in cuts)
        fitting = _every_cut(n, max_size)
        assert _packed_cost(lengths, cuts, call_cost) == pytest.approx(
            min(_packed_cost(lengths, c, call_cost) for c in fitting)
        )
    # one batch of a long window and short ones packs them two to a row: cheaper than two calls
    assert cut_by_length([40, 20, 20, 19, 19], 8, 54.0, packed=True) == [range(0, 5)]
    assert len(cut_by_length([40, 20, 20, 19, 19], 8, 54.0)) == 2  # padded, the short ones go apart


def test_cut_by_length_wants_the_longest_first():
    with pytest.raises(ValueError, match="longest first"):
        cut_by_length([3, 5, 2], 4, 1.0)
    assert cut_by_length([], 4, 1.0) == []
    assert sorted(len(cut) for cut in cut_by_length([9, 9, 9, 9, 9], 2, 1.0)) == [1, 2, 2]  # fewest calls
    assert cut_by_length([40, 39, 3, 2], 4, 10.0) == [range(0, 2), range(2, 4)]  # 79+10+6+10 < 160+10


def test_tags_and_scores_do_not_depend_on_how_the_batches_are_cut(imaged_run, tiny_root, monkeypatch):
    texts = [" ".join(p.tokens) for p in load_split(tiny_root, "tiny", "test")]
    tagger = umt.load(imaged_run["run"], device="cpu")
    side = type(tagger.text)
    batches = []
    collate = Collator.__call__
    monkeypatch.setattr(Collator, "__call__", lambda self, rows: batches.append(len(rows)) or collate(self, rows))
    got = {}
    for call_cost in (None, 54.0, 0.0):  # fixed batches, cut by length, a batch per length
        monkeypatch.setattr(side, "call_cost", call_cost)
        batches.clear()
        got[call_cost] = (tagger.tag(texts), list(batches))
    assert len({tuple(sizes) for _, sizes in got.values()}) >= 2, "the settings cut the same batches"
    fixed = got[None][0]
    for call_cost in (54.0, 0.0):
        records = got[call_cost][0]
        assert [r["tags"] for r in records] == [r["tags"] for r in fixed]
        for record, expected in zip(records, fixed, strict=True):
            assert [e["score"] for e in record["entities"]] == pytest.approx(
                [e["score"] for e in expected["entities"]], abs=1e-5
            )


def test_a_packing_model_tags_as_it_does_padded(imaged_run, monkeypatch):
    """A trained UMT model (the tiny BERT, images read) tags the same posts with the same tags and
    scores whether its batches run packed or padded, and the packed path is the one taken."""
    tagger = umt.load(imaged_run["run"], device="cpu")
    assert tagger.model.packs
    texts = ["Great to see Anna in Paris", "Globex in Sydney", "a b", "Chloe visits Oslo with Anna and Globex staff"]
    calls = []
    packed = PretrainedEncoder._packed
    monkeypatch.setattr(PretrainedEncoder, "_packed", lambda self, x: calls.append(1) or packed(self, x))
    got = tagger.tag(texts)
    assert calls
    tagger.model.encoder.packs = False
    expected = tagger.tag(texts)
    assert [r["tags"] for r in got] == [r["tags"] for r in expected]
    for record, want in zip(got, expected, strict=True):
        assert [e["score"] for e in record["entities"]] == pytest.approx(
            [e["score"] for e in want["entities"]], abs=1e-5
        )


def test_tagging_on_a_cpu_runs_without_onednn_and_gives_it_back(imaged_run):
    """oneDNN keeps a compiled kernel per batch shape (a server's memory grew without end): the
    model runs on torch's own kernels while tagging, and oneDNN is back for everything else."""
    tagger = umt.load(imaged_run["run"], device="cpu")
    seen = []
    emissions = tagger.model.emissions
    tagger.model.emissions = lambda batch: seen.append(torch.backends.mkldnn.enabled) or emissions(batch)
    before = torch.backends.mkldnn.enabled
    tagger.tag(["Great to see Anna in Paris", "Globex in Sydney"])
    assert seen and not any(seen)
    assert torch.backends.mkldnn.enabled == before
