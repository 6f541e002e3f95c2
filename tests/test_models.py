"""The zoo: registry, config, the model contract for every name, ablations, overfitting, and a set
where only the image tells the entity type (multimodal models must use it, text-only cannot)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from umt.pipeline.batch import Batch, SubwordInputs
from umt.pipeline.errors import ConfigError
from umt.pipeline.labels import ESD_LABELS, LabelVocab, bio_to_spans, esd_tag
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.models.tiny import SPECIAL_TOKENS, build_tiny_encoder

HIDDEN = 32
HEADS = 4
VISUAL_DIM = 16
GRID = 49
TYPES = ("LOC", "ORG", "PER")
VOCAB = LabelVocab.from_types(TYPES)
PAD, CLS, SEP = (SPECIAL_TOKENS.index(t) for t in ("[PAD]", "[CLS]", "[SEP]"))
FILLER_IDS = range(20, 60)  # piece ids of ordinary words
NAME_IDS = range(100, 106)  # piece ids of the ambiguous names: any of them can be of any type

ALL_MODELS = (
    "bert-softmax",
    "bert-crf",
    "gvatt-bert-crf",
    "adacan-bert-crf",
    "mt",
    "umt",
    "umt-no-esd",
    "umt-no-conversion",
    "umt-no-image-aware-wr",
    "umt-no-visual-gate",
)  # fmt: skip  (the sub-word models; the word-level ones are in test_zoo.py and test_word_side.py)
TABLE_2 = (
    "bilstm-crf", "cnn-bilstm-crf", "hbilstm-crf", "bert-softmax", "bert-crf",
    "gvatt-hbilstm-crf", "adacan-cnn-bilstm-crf", "gvatt-bert-crf", "adacan-bert-crf", "mt", "umt",
)  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-bert")
    return str(build_tiny_encoder(folder, hidden=HIDDEN, layers=2, heads=2, seed=0))


def _config(encoder: str, **kw) -> ModelConfig:
    return ModelConfig(encoder=encoder, heads=HEADS, visual_dim=VISUAL_DIM, grid=GRID, **kw)


# ---- generated windows ---------------------------------------------------------------------------


def _window(rng: random.Random, entity_type: str | None = None):
    """Words as piece-id lists (fillers have 1-2 pieces) and BIO labels; one name of 1-2 words."""
    words, labels = [], []
    entity_type = entity_type or rng.choice(TYPES)
    name_at = rng.randint(0, 3)
    for i in range(rng.randint(3, 6)):
        if i == name_at:
            for j in range(rng.randint(1, 2)):
                words.append([rng.choice(NAME_IDS)])
                labels.append(("B-" if j == 0 else "I-") + entity_type)
        else:
            words.append([rng.choice(FILLER_IDS) for _ in range(rng.randint(1, 2))])
            labels.append("O")
    return words, labels


def _grid(rng: torch.Generator, entity_type: str, prototypes: torch.Tensor) -> torch.Tensor:
    """Noise everywhere, the type's prototype planted in a random 30% of the blocks."""
    grid = torch.randn(GRID, VISUAL_DIM, generator=rng)
    blocks = torch.randperm(GRID, generator=rng)[: GRID * 3 // 10]
    grid[blocks] += prototypes[TYPES.index(entity_type)]
    return grid  # (GRID, VISUAL_DIM)


def _collate(windows, images: torch.Tensor | None, image_mask: torch.Tensor) -> Batch:
    pieces = [[CLS, *[p for word in words for p in word], SEP] for words, _ in windows]
    L, W = max(map(len, pieces)), max(len(words) for words, _ in windows)
    B = len(windows)
    input_ids = torch.full((B, L), PAD)
    attention_mask = torch.zeros(B, L, dtype=torch.long)
    word_index = torch.zeros(B, W, dtype=torch.long)
    word_mask = torch.zeros(B, W, dtype=torch.bool)
    labels = torch.zeros(B, W, dtype=torch.long)
    esd_labels = torch.zeros(B, W, dtype=torch.long)
    for b, ((words, tags), ids) in enumerate(zip(windows, pieces, strict=True)):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        attention_mask[b, : len(ids)] = 1
        starts = [1 + sum(len(w) for w in words[:i]) for i in range(len(words))]
        word_index[b, : len(words)] = torch.tensor(starts)
        word_mask[b, : len(words)] = True
        labels[b, : len(tags)] = torch.tensor(VOCAB.encode(tags))
        esd_labels[b, : len(tags)] = torch.tensor([ESD_LABELS.index(esd_tag(t)) for t in tags])
    text = SubwordInputs(input_ids, attention_mask, word_index)
    return Batch(text, word_mask, labels, esd_labels, images, image_mask)


def _batch(seed: int, size: int, images: str = "all") -> Batch:
    """``images``: "all", "none" (batch.image None) or "mixed" (absent slots hold NaN)."""
    rng = random.Random(seed)
    windows = [_window(rng) for _ in range(size)]
    if images == "none":
        return _collate(windows, None, torch.zeros(size, dtype=torch.bool))
    grids = torch.randn(size, GRID, VISUAL_DIM, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(size, dtype=torch.bool)
    if images == "mixed":
        mask[::2] = False
        grids[~mask] = float("nan")
    return _collate(windows, grids, mask)


def build_model(name: str, config: ModelConfig, vocab: LabelVocab) -> torch.nn.Module:
    """What training does: the recipe's text side builds the encoder, the recipe the model."""
    recipe = get_recipe(name)
    return recipe.build(config, vocab, recipe.text_side().create(config, []))


def _build(name: str, encoder: str, seed: int = 0, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, _config(encoder, **kw), VOCAB)


# ---- registry and config -------------------------------------------------------------------------


def test_registry_has_the_eleven_systems_of_table_2_the_ablations_and_refuses_unknown_names():
    ablations = [n for n in model_names() if n.startswith("umt-no-")]
    assert model_names() == [*TABLE_2, *ablations] and len(ablations) == 4
    assert [get_recipe(n).multimodal for n in TABLE_2] == [False] * 5 + [True] * 6
    assert all(get_recipe(n).paper for n in model_names())
    with pytest.raises(ConfigError, match="unknown model 'umt-xl'.*bert-crf.*umt-no-visual-gate"):
        get_recipe("umt-xl")


def test_a_name_fixes_its_switches_and_refuses_contradicting_ones(encoder):
    assert _build("mt", encoder).config.esd is False
    model = _build("umt-no-visual-gate", encoder)
    assert model.config.visual_gate is False and model.config.esd is True
    with pytest.raises(ConfigError, match="'bert-crf' fixes crf=True"):
        build_model("bert-crf", _config(encoder, crf=False), VOCAB)
    with pytest.raises(ConfigError, match="'umt' fixes esd=True"):
        build_model("umt", _config(encoder, esd=False), VOCAB)
    # a free switch stays free: umt with visual_gate=false is the no-visual-gate ablation
    assert _build("umt", encoder, visual_gate=False).fusion.gate is None


def test_model_config_round_trips_and_validates():
    config = ModelConfig(encoder="some/folder", heads=4, dropout=0, conversion_trainable=False)
    assert config.dropout == 0.0 and isinstance(config.dropout, float)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig.from_dict({"heads": 6}) == ModelConfig(heads=6, adacan_tanh=False)
    assert ModelConfig().adacan_tanh  # a new run projects as Zhang et al.; a stored config without the key, linearly
    with pytest.raises(ConfigError, match="unknown keys.*'lr'"):
        ModelConfig.from_dict({"lr": 1e-3})
    with pytest.raises(ConfigError, match="heads must be a int"):
        ModelConfig(heads=True)
    with pytest.raises(ConfigError, match="esd must be a bool"):
        ModelConfig(esd="yes")
    with pytest.raises(ConfigError, match="dropout"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ConfigError, match="heads must be at least 1"):
        ModelConfig(heads=0)


def test_heads_must_divide_the_encoder_width(encoder):
    with pytest.raises(ConfigError, match=r"heads=5 must divide the encoder's hidden size 32.*--set heads=4"):
        build_model("umt", replace(_config(encoder), heads=5), VOCAB)
    assert build_model("bert-crf", replace(_config(encoder), heads=5), VOCAB)  # text-only: no added attention


# ---- the model contract, for every name -----------------------------------------------------------


@pytest.mark.parametrize("images", ["all", "none", "mixed"])
@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_trains_and_decodes(name, images, encoder):
    model = _build(name, encoder)
    assert model.multimodal == get_recipe(name).multimodal
    batch = _batch(seed=1, size=4, images=images)
    loss = model(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(n.startswith("encoder.") and g.any() for n, g in grads.items())
    if model.multimodal:  # the projection learns from present images, the "no image" grid from absent ones
        learns = {n: bool(g.any()) for n, g in grads.items()}
        assert learns.get("fusion.visual.proj.weight", False) == (images != "none")
        assert learns.get("fusion.visual.no_image", False) == (images != "all")
    model.eval()
    decoded = model.decode(batch)
    assert [len(tags) for tags in decoded] == batch.word_mask.sum(1).tolist()
    assert all(0 <= t < len(VOCAB) for tags in decoded for t in tags)


@pytest.mark.parametrize("name", ["bert-crf", "bert-softmax"])
def test_text_only_models_never_read_the_image(name, encoder):
    model = _build(name, encoder).eval()
    batch = _batch(seed=2, size=3, images="all")
    blind = replace(batch, image=None, image_mask=torch.zeros(3, dtype=torch.bool))
    assert torch.equal(model(batch), model(blind))
    assert not any("visual" in n for n, _ in model.named_parameters())


def test_umt_loss_is_mner_nll_plus_lambda_esd_nll(encoder):
    model = _build("umt", encoder, esd_weight=0.25).eval()
    batch = _batch(seed=3, size=4)
    emissions, span_emissions = model.emissions(batch)
    mner = model.head.loss(emissions, batch.labels, batch.word_mask)
    esd = model.span_detector.crf.loss(span_emissions, batch.esd_labels, batch.word_mask)
    assert torch.allclose(model(batch), mner + 0.25 * esd)


def test_conversion_adds_esd_scores_through_wc_as_in_eq7(encoder):
    model = _build("umt", encoder).eval()
    with torch.no_grad():  # a zero MNER emission layer leaves exactly (w_ESD . t) W^c
        model.emission.linear.weight.zero_()
        model.emission.linear.bias.zero_()
    batch = _batch(seed=4, size=3)
    emissions, span_emissions = model.emissions(batch)
    assert span_emissions.shape == (*batch.word_mask.shape, len(ESD_LABELS))
    assert torch.allclose(emissions, span_emissions @ model.conversion.matrix)
    assert model.conversion.matrix.requires_grad  # trainable by default
    frozen = _build("umt", encoder, conversion_trainable=False)
    assert "conversion.matrix" not in dict(frozen.named_parameters())


@pytest.mark.parametrize("mix", ["sum", "mean"])
def test_eq7_runs_in_fp32_under_bf16_autocast_and_equals_the_fp32_computation(encoder, mix):
    """The MNER emissions, the span emissions and their sum through W^c all stay fp32 under
    autocast: what the CRF reads is the fp32 computation from the same states."""
    model = _build("umt", encoder, emission_mix=mix).eval()
    with torch.no_grad():
        model.span_detector.emission.linear.weight.normal_(std=5.0)  # span scores large enough to round
    seen = {}

    def keep(_module, args, output):
        seen["mner"], seen["span"], seen["sum"] = args[0], args[1], output

    model.conversion.register_forward_hook(keep)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        emissions, span_emissions = model.emissions(_batch(seed=4, size=3))
    assert emissions.dtype == span_emissions.dtype == seen["mner"].dtype == torch.float32
    matrix = model.conversion.matrix.detach().double()
    mner, span = seen["mner"].double(), seen["span"].double()
    expected = mner + span @ matrix if mix == "sum" else 0.5 * mner + 0.5 * span @ matrix
    torch.testing.assert_close(emissions.double(), expected, rtol=1e-6, atol=1e-5)
    rounded = (span.bfloat16() @ matrix.bfloat16()).double()
    assert not torch.allclose(rounded, span @ matrix, rtol=1e-6, atol=1e-5)  # bf16 would have rounded it


def _perturb_span_scores(model):
    with torch.no_grad():
        model.span_detector.emission.linear.weight.normal_(std=5.0)


def test_no_conversion_keeps_esd_as_a_loss_but_not_in_the_emissions(encoder):
    batch = _batch(seed=5, size=4)
    for name, esd_enters in (("umt", True), ("umt-no-conversion", False)):
        model = _build(name, encoder).eval()
        assert model.span_detector is not None
        before = model.emissions(batch)[0]
        loss_before = model(batch)
        _perturb_span_scores(model)
        assert torch.allclose(before, model.emissions(batch)[0]) != esd_enters
        assert not torch.allclose(loss_before, model(batch))  # the ESD loss is there either way
    assert model.conversion is None


def test_ablations_remove_their_parts(encoder):
    for name in ("mt", "umt-no-esd"):
        model = _build(name, encoder)
        assert model.span_detector is None and model.conversion is None
    assert _build("umt-no-image-aware-wr", encoder).fusion.coupled is None
    no_gate = _build("umt-no-visual-gate", encoder)
    assert no_gate.fusion.gate is None and not any("gate" in n for n, _ in no_gate.named_parameters())
    full = _build("umt", encoder)
    assert full.fusion.gate is not None and full.fusion.coupled is not None and full.conversion is not None


# ---- learning ---------------------------------------------------------------------------------------


def _fit(model, batches, steps: int, lr: float) -> float:
    """Adam on the batches in turn, dropout off (model.eval()): returns the last loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.eval()
    for step in range(steps):
        loss = model(batches[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss.item()


@pytest.mark.parametrize("name", ["mt", "umt"])
def test_mt_and_umt_overfit_a_small_batch(name, encoder):
    batch = _batch(seed=6, size=4, images="mixed")
    model = _build(name, encoder, seed=1)
    first = model(batch).item()
    last = _fit(model, [batch], steps=60, lr=3e-3)
    assert last < 0.05 * first and last < 0.1
    gold = [row[mask].tolist() for row, mask in zip(batch.labels, batch.word_mask, strict=True)]
    assert model.decode(batch) == gold


def _typed_by_image(seed: int, size: int, prototypes: torch.Tensor) -> Batch:
    """Posts whose names are ambiguous in the text: the entity type is only in the image."""
    rng, grid_rng = random.Random(seed), torch.Generator().manual_seed(seed)
    types = [TYPES[i % len(TYPES)] for i in range(size)]
    windows = [_window(rng, t) for t in types]
    grids = torch.stack([_grid(grid_rng, t, prototypes) for t in types])
    return _collate(windows, grids, torch.ones(size, dtype=torch.bool))


def _entity_f1(model, batch: Batch) -> float:
    model.eval()
    real = zip(batch.labels, batch.word_mask, strict=True)
    gold_rows = [VOCAB.decode(row[mask].tolist()) for row, mask in real]
    pred_rows = [VOCAB.decode(ids) for ids in model.decode(batch)]
    gold = {(b, *span) for b, row in enumerate(gold_rows) for span in bio_to_spans(row)}
    pred = {(b, *span) for b, row in enumerate(pred_rows) for span in bio_to_spans(row)}
    correct = len(gold & pred)
    return 2 * correct / (len(gold) + len(pred)) if gold or pred else 1.0


def test_multimodal_models_read_the_type_from_the_image_and_text_only_cannot(encoder):
    prototypes = 3.0 * torch.nn.functional.normalize(  # one direction per type, norm 3 against N(0, 1) noise
        torch.randn(len(TYPES), VISUAL_DIM, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    steps = 120
    train = [_typed_by_image(100 + i, 16, prototypes) for i in range(steps)]  # fresh posts every step
    dev = _typed_by_image(999, 60, prototypes)
    f1 = {}
    for name in ("bert-crf", "mt", "umt"):
        model = _build(name, encoder, seed=2)
        _fit(model, train, steps=steps, lr=5e-3)
        f1[name] = _entity_f1(model, dev)
    chance = 1 / len(TYPES)  # the spans are easy; without the image the type is a guess
    assert f1["bert-crf"] < chance + 0.2, f1
    assert min(f1["mt"], f1["umt"]) > 0.85, f1


def test_umt_models_shows_paper_rows_text_sides_fusions_and_defaults():
    from rich.console import Console

    from umt.stages import models

    console = Console(width=300, record=True)
    models.run(console, defaults=True)
    lines = console.export_text().splitlines()
    row = next(line for line in lines if "adacan-cnn-bilstm-crf" in line)
    paper = "AdaCAN-CNN-BiLSTM-CRF (Zhang et al., 2018): 70.69 / 82.15"
    for part in ("yes", "words + char CNN -> BiLSTM", "ADACAN", paper):
        assert part in row, (part, row)
    row = next(line for line in lines if line.lstrip("│ ").startswith("bert-crf "))
    assert "BERT (sub-words)" in row and "83.44" in row and " no " in row
    at = next(i for i, line in enumerate(lines) if "hbilstm-crf" in line and "optimizer=sgd" in line)
    defaults = " ".join(lines[at : at + 2])  # the row may wrap
    assert "lstm_hidden=100" in defaults and "char_dim=25" in defaults
    assert lines[at].rstrip(" │").endswith("│ batch_size=16")  # --recipe paper changes only the batch
    row = next(line for line in lines if line.lstrip("│ ").startswith("umt ") and "general defaults" in line)
    assert row.rstrip(" │").endswith("│ epochs=22, head_lr=0.0")
