"""The building blocks: attention layer, visual projection, MMI and its switches, encoder, W^c."""

from __future__ import annotations

import math

import huggingface_hub
import pytest
import torch
import torch.nn.functional as F

from umt.pipeline.batch import SubwordInputs
from umt.pipeline.errors import ConfigError
from umt.pipeline.heads.conversion import LabelConversion, conversion_matrix
from umt.pipeline.labels import LabelVocab
from umt.pipeline.models.tiny import build_tiny_encoder
from umt.pipeline.modules.encoders import PretrainedEncoder, gather_words
from umt.pipeline.modules.mmi import MultimodalInteraction
from umt.pipeline.modules.transformer import MultiHeadAttention, TransformerLayer
from umt.pipeline.modules.visual import VisualProjection
from umt.pipeline.text.hf import is_local_path, load_encoder_model

D = 16
HEADS = 4
GRID = 6
VISUAL_DIM = 10


def test_attention_is_per_head_scaled_dot_product_with_key_padding():
    torch.manual_seed(0)
    attention = MultiHeadAttention(D, HEADS, dropout=0.0)
    queries, keys = torch.randn(2, 3, D), torch.randn(2, 5, D)
    key_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out, weights = attention(queries, keys, key_mask)  # (2, 3, D), (2, h, 3, 5)

    def split(x):  # (B, L, D) -> (B, h, L, D/h)
        return x.view(x.shape[0], x.shape[1], HEADS, D // HEADS).transpose(1, 2)

    q, k, v = split(attention.query(queries)), split(attention.key(keys)), split(attention.value(keys))
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
    reference = attention.out(reference.transpose(1, 2).reshape(2, 3, D))
    assert torch.allclose(out, reference, atol=1e-6)
    assert torch.allclose(weights.sum(-1), torch.ones(2, HEADS, 3))  # the weights returned are a distribution
    assert (weights[1, :, :, 2:] < 1e-6).all()  # over the real keys only


def test_added_layers_start_from_berts_initialisation():
    layer = TransformerLayer(64, HEADS, dropout=0.0)
    assert math.isclose(layer.attention.query.weight.std().item(), 0.02, rel_tol=0.1)
    assert not layer.ffn[0].bias.any()


def test_layer_ignores_padded_keys_and_stays_finite_when_all_are_masked():
    torch.manual_seed(0)
    layer = TransformerLayer(D, HEADS, dropout=0.0).eval()
    x = torch.randn(2, 5, D)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    out = layer(x, x, mask)  # self-attention
    changed = x.clone()
    changed[1, 3:] = 100.0  # garbage on the padding positions
    again = layer(changed, changed, mask)
    assert torch.allclose(out[1, :3], again[1, :3], atol=1e-5)
    assert not torch.allclose(out[1, 3:], again[1, 3:])  # padding queries are still computed
    nothing = layer(x, x, torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(nothing).all()


def test_cross_modal_layer_shapes_follow_the_queries():
    layer = TransformerLayer(D, HEADS, dropout=0.1)
    assert layer(torch.randn(2, GRID, D), torch.randn(2, 7, D), torch.ones(2, 7, dtype=torch.bool)).shape == (
        2,
        GRID,
        D,
    )
    with pytest.raises(ValueError, match="heads"):
        MultiHeadAttention(D, 5, dropout=0.0)


def test_gather_words_takes_each_first_piece():
    pieces = torch.arange(2 * 6 * 3, dtype=torch.float).view(2, 6, 3)
    word_index = torch.tensor([[1, 2, 4], [1, 3, 0]])
    words = gather_words(pieces, word_index)  # (2, 3, 3)
    assert torch.equal(words[0, 2], pieces[0, 4]) and torch.equal(words[1, 1], pieces[1, 3])
    assert torch.equal(words[1, 2], pieces[1, 0])


def test_visual_projection_uses_the_learned_grid_for_absent_images():
    torch.manual_seed(0)
    visual = VisualProjection(VISUAL_DIM, D, GRID)
    image = torch.randn(3, GRID, VISUAL_DIM)
    image[1] = float("nan")  # whatever a cache stores for a missing image must not leak
    mask = torch.tensor([True, False, True])
    v = visual(image, mask, batch_size=3)  # (3, GRID, D)
    assert torch.isfinite(v).all()
    assert torch.equal(v[1], visual.no_image)
    assert torch.allclose(v[0], visual.proj(image[0]))
    v.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in visual.parameters())
    assert torch.equal(visual(None, torch.zeros(3, dtype=torch.bool), batch_size=3)[2], visual.no_image)
    with pytest.raises(ValueError, match="expects"):
        visual(torch.randn(3, GRID + 1, VISUAL_DIM), mask, batch_size=3)


def _mmi(**switches) -> MultimodalInteraction:
    torch.manual_seed(0)
    return MultimodalInteraction(D, HEADS, 0.0, VISUAL_DIM, GRID, **switches).eval()


def _inputs():
    torch.manual_seed(1)
    text = torch.randn(2, 7, D)
    text_mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])
    return text, text_mask, torch.randn(2, GRID, VISUAL_DIM), torch.tensor([True, False])


def test_mmi_output_is_image_aware_words_and_gated_visual_words():
    mmi = _mmi()
    text, text_mask, image, image_mask = _inputs()
    h = mmi(text, text_mask, image, image_mask)
    assert h.shape == (2, 7, 2 * D) and mmi.out_dim == 2 * D
    r = mmi.text_layer(text, text, text_mask)
    v = mmi.visual(image, image_mask, batch_size=2)
    q = mmi.word_to_visual(r, v)
    a = mmi.coupled(r, mmi.visual_to_word(v, r, text_mask))
    gate = torch.sigmoid(mmi.gate(torch.cat([a, q], dim=-1)))
    assert torch.allclose(h, torch.cat([a, gate * q], dim=-1), atol=1e-6)
    # the words' image-aware states depend on the image
    other = mmi(text, text_mask, image + 1.0, image_mask)
    assert not torch.allclose(h[0, :, :D], other[0, :, :D])
    assert torch.allclose(h[1], other[1])  # post 1 has no image: its slot is never read


def test_mmi_without_image_aware_words_uses_r():
    mmi = _mmi(image_aware=False)
    assert mmi.visual_to_word is None and mmi.coupled is None
    text, text_mask, image, image_mask = _inputs()
    h = mmi(text, text_mask, image, image_mask)
    assert torch.allclose(h[..., :D], mmi.text_layer(text, text, text_mask), atol=1e-6)


def test_mmi_without_visual_gate_has_no_gate_and_b_is_q():
    mmi = _mmi(visual_gate=False)
    assert mmi.gate is None and not any("gate" in name for name, _ in mmi.named_parameters())
    text, text_mask, image, image_mask = _inputs()
    h = mmi(text, text_mask, image, image_mask)
    r = mmi.text_layer(text, text, text_mask)
    q = mmi.word_to_visual(r, mmi.visual(image, image_mask, batch_size=2))
    assert torch.allclose(h[..., D:], q, atol=1e-6)
    gated = _mmi()(text, text_mask, image, image_mask)  # same seed, same layers, plus the gate
    assert not torch.allclose(gated[..., D:], q, atol=1e-3)


def test_label_conversion_starts_from_the_paper_initialisation():
    vocab = LabelVocab.from_types(["PER", "LOC"])
    trainable = LabelConversion(conversion_matrix(vocab), trainable=True, mix="sum")
    frozen = LabelConversion(conversion_matrix(vocab), trainable=False, mix="sum")
    assert [n for n, _ in trainable.named_parameters()] == ["matrix"]
    assert list(frozen.parameters()) == [] and set(frozen.state_dict()) == {"matrix"}
    frozen.load_state_dict(trainable.state_dict())
    span, mner = torch.randn(2, 3, 3), torch.randn(2, 3, len(vocab))
    assert torch.allclose(trainable(mner, span), mner + span @ conversion_matrix(vocab))  # eq. 7
    mean = LabelConversion(conversion_matrix(vocab), trainable=True, mix="mean")  # the authors' code
    assert torch.allclose(mean(mner, span), 0.5 * mner + 0.5 * span @ conversion_matrix(vocab))
    # B (row 1) spreads over B-LOC and B-PER, half each
    assert trainable.matrix[1, vocab.index("B-PER")].item() == 0.5


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("encoder"), hidden=32, layers=1, heads=2)


def test_text_encoder_from_folder_with_or_without_its_weights(encoder_folder):
    pretrained = PretrainedEncoder(load_encoder_model(str(encoder_folder)))
    random = PretrainedEncoder(load_encoder_model(str(encoder_folder), pretrained=False))
    assert pretrained.hidden_size == random.hidden_size == 32
    saved = pretrained.model.embeddings.word_embeddings.weight
    assert not torch.equal(saved, random.model.embeddings.word_embeddings.weight)
    ids = torch.tensor([[2, 10, 11, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    states = pretrained.eval()(SubwordInputs(ids, mask, torch.tensor([[1, 2]])))
    assert states.states.shape == (1, 5, 32) and states.words().shape == (1, 2, 32)
    assert states.mask.tolist() == [[True, True, True, True, False]]


def test_text_encoder_errors_are_config_errors(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        load_encoder_model(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is empty"):
        load_encoder_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"lacks a tokenizer .* and weights .*holds: config.json"):
        load_encoder_model(str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "is_offline_mode", lambda: True)
    with pytest.raises(ConfigError, match="offline.*--encoder DIR"):
        load_encoder_model("umt-tests/no-such-encoder")


@pytest.mark.parametrize(
    "name, local",
    [
        ("bert-base-cased", False),
        ("dslim/bert-base-NER", False),  # owner/name: a hub id unless such a folder exists
        ("./bert", True),
        ("/models/bert", True),
        ("~/bert", True),
        ("models/bert/v1", True),
        ("bert/", True),
    ],
)
def test_one_rule_for_local_folders_and_hub_ids(name, local):
    assert is_local_path(name) is local
