"""The baseline fusions under the one fusion interface: GVATT and AdaCAN (and their attention)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from umt.pipeline.errors import ConfigError
from umt.pipeline.labels import LabelVocab
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.modules.adacan import AdaptiveCoAttention
from umt.pipeline.modules.attention import AdditiveAttention
from umt.pipeline.modules.fusion import Fusion
from umt.pipeline.modules.gvatt import GatedVisualAttention

D, VISUAL_DIM, GRID = 8, 6, 5
FUSIONS = {"gvatt": GatedVisualAttention, "adacan": partial(AdaptiveCoAttention, tanh=True)}


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(2, 4, D, generator=g)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    image = torch.randn(2, GRID, VISUAL_DIM, generator=g)
    return text, mask, image, torch.tensor([True, True])


def _fusion(name):
    torch.manual_seed(0)
    return FUSIONS[name](D, VISUAL_DIM, GRID).eval()


def test_additive_attention_is_w_tanh_of_the_sum_and_ignores_masked_keys():
    torch.manual_seed(0)
    attention = AdditiveAttention(3, 4, 5)
    queries, keys = torch.randn(1, 2, 3), torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    context, weights = attention(queries, keys, mask)
    q = attention.query(queries[0])  # (2, 5)
    k = attention.key(keys[0])  # (3, 5)
    scores = torch.stack([attention.score(torch.tanh(q[i] + k)).squeeze(-1) for i in range(2)])  # (2, 3)
    expected = scores[:, :2].softmax(-1)
    torch.testing.assert_close(weights[0, :, :2], expected)
    assert weights[0, :, 2].abs().max() == 0
    torch.testing.assert_close(context[0], expected @ keys[0, :2])


@pytest.mark.parametrize("name", FUSIONS)
def test_fusion_shapes_and_padding_positions_never_reach_real_ones(name):
    fusion = _fusion(name)
    text, mask, image, image_mask = _inputs()
    out = fusion(text, mask, image, image_mask)
    assert out.shape == (2, 4, fusion.out_dim) and fusion.out_dim == (D if name == "gvatt" else 2 * D)
    changed = text.clone()
    changed[0, 3] = 100.0  # the padding position of the first post
    again = fusion(changed, mask, image, image_mask)
    torch.testing.assert_close(again[0, :3], out[0, :3])
    torch.testing.assert_close(again[1], out[1])


@pytest.mark.parametrize("name", FUSIONS)
def test_fusion_reads_present_images_and_never_an_absent_one(name):
    fusion = _fusion(name)
    text, mask, image, _ = _inputs()
    present = fusion(text, mask, image, torch.tensor([True, True]))
    other = fusion(text, mask, image + 1.0, torch.tensor([True, True]))
    assert not torch.allclose(present, other)  # the image matters
    absent_mask = torch.tensor([False, True])
    poisoned = image.clone()
    poisoned[0] = float("nan")  # what an absent slot may hold
    mixed = fusion(text, mask, poisoned, absent_mask)
    assert torch.isfinite(mixed).all()
    no_images = fusion(text, mask, None, torch.tensor([False, False]))
    torch.testing.assert_close(mixed[0], no_images[0])  # absent: the learned "no image" grid, whatever the slot holds
    torch.testing.assert_close(mixed[1], present[1])


def test_adacan_keeps_the_text_beside_the_filtered_visual_vector():
    fusion = _fusion("adacan")
    text, mask, image, image_mask = _inputs()
    out = fusion(text, mask, image, image_mask)
    torch.testing.assert_close(out[..., :D], text)  # [h_t; u_t]
    with torch.no_grad():  # a shut filtration gate lets nothing of the image through
        fusion.filtration_gate.weight.zero_()
        fusion.filtration_gate.bias.fill_(-1e4)
    assert fusion(text, mask, image, image_mask)[..., D:].abs().max() < 1e-6


def test_gvatt_gate_closed_on_the_visual_side_leaves_the_scaled_word():
    fusion = _fusion("gvatt")
    text, mask, image, image_mask = _inputs()
    with torch.no_grad():  # beta_w = sigmoid(0) = 1/2 for every word, beta_v = 0
        fusion.gates.weight.zero_()
        fusion.gates.bias[:D].zero_()
        fusion.gates.bias[D : 2 * D].fill_(-1e4)
    torch.testing.assert_close(fusion(text, mask, image, image_mask), 0.5 * text)


@pytest.mark.parametrize("tanh", [True, False])
def test_adacan_projects_the_regions_as_zhang_et_al_with_tanh(tanh):
    """v_I = tanh(W_I v_I + b_I) (Zhang et al., 2018); ``adacan_tanh=false`` (older runs): linear."""
    torch.manual_seed(0)
    fusion = AdaptiveCoAttention(D, VISUAL_DIM, GRID, tanh=tanh).eval()
    text, mask, image, present = _inputs()
    seen = {}

    def keep_the_keys(_module, args, _output):
        seen["regions"] = args[1]  # (B, grid, d) the keys the words attend over: V

    fusion.word_to_visual.register_forward_hook(keep_the_keys)
    fusion(text, mask, image, present)
    linear = fusion.visual.proj(image)  # (B, grid, d) W_u U + b_u
    torch.testing.assert_close(seen["regions"], torch.tanh(linear) if tanh else linear)


class MeanImage(Fusion):
    """A toy fusion for the test below: each text state plus its post's mean projected region."""

    def __init__(self, d: int, visual_dim: int):
        super().__init__()
        self.project = torch.nn.Linear(visual_dim, d)
        self.out_dim = d

    @classmethod
    def from_config(cls, config: ModelConfig, d: int) -> MeanImage:
        return cls(d, config.visual_dim)

    def forward(self, text, text_mask, image, image_mask):
        if image is None:
            return text
        mean = self.project(image).mean(dim=1) * image_mask[:, None].float()  # (B, d)
        return text + mean[:, None, :]  # (B, L, d)


def test_a_new_fusion_is_its_module_plus_one_table_entry(monkeypatch, tiny_encoder_dir):
    """One FUSIONS entry makes a fusion nameable and buildable; a named model is one register call."""
    from umt.pipeline.models.catalog import registered
    from umt.pipeline.models.config import FUSIONS
    from umt.pipeline.models.zoo import CHECK_ENCODER, SUBWORD, multimodal_tagger

    with pytest.raises(ConfigError, match="fusion must be one of mmi, gvatt, adacan"):
        ModelConfig(fusion="mean-image")
    monkeypatch.setitem(FUSIONS, "mean-image", f"{__name__}:MeanImage")
    fixes = {"esd": False, "crf": True, "fusion": "mean-image"}
    with registered(
        "mean-image-bert-crf", multimodal_tagger, multimodal=True, text=SUBWORD, check=CHECK_ENCODER, fixes=fixes,
        help="BERT-CRF + the mean region",
    ) as recipe:  # fmt: skip
        config = ModelConfig(encoder=str(tiny_encoder_dir), heads=4)
        vocab = LabelVocab.from_sequences([["B-PER", "O", "B-LOC"]])
        model = recipe.build(config, vocab, recipe.text_side().create(config, []))
    assert type(model.fusion).__name__ == "MeanImage" and model.config.fusion == "mean-image"
    assert any(name.startswith("fusion.project") for name, _ in model.named_parameters())
