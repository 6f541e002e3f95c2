"""Every registered model drops its encoder's states out exactly once on their way to the emissions.

Ma and Hovy (2016) drop the BiLSTM's output once; the paper drops the fused states once before
each classifier. A second dropout in series (the encoder's output dropped, then again before
the emission layer; a fusion's vector dropped, then again) keeps a feature with probability
(1 - p)^2 and scales it by 1 / (1 - p)^2. The count follows the tensors themselves: every torch
call is seen, each result carries the most dropouts in series on any path from the encoder's
states to it, and the emissions must carry exactly one. The dropouts inside the added Transformer
layers (their sub-layers' residual dropouts, BERT's own layer design: the residual path is never
dropped) are the layers' own and are not counted; the encoder's own (BERT's) come before the
states are marked.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from umt.cache.grid import GridShape
from umt.pipeline.data.batching import Collator, MnerDataset
from umt.pipeline.data.types import Post
from umt.pipeline.labels import LabelVocab
from umt.pipeline.models.catalog import get_recipe, model_names
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.modules import transformer
from umt.pipeline.modules.encoders import PretrainedEncoder
from umt.pipeline.modules.word_encoder import WordEncoder

SMALL = {"heads": 4, "lstm_hidden": 16, "char_dim": 8, "char_hidden": 8, "word_dim": 16, "case_dim": 4}
POSTS = [
    Post("Anna visits Paris today".split(), ["B-PER", "O", "B-LOC", "O"], "a"),
    Post("the Louvre".split(), ["O", "B-ORG"], "b"),
]


class DropoutsInSeries(TorchFunctionMode):
    """Each tensor computed from the marked states -> the most dropouts on any path from them.

    A dropout counts when an ``nn.Dropout`` of the model applies it, except the added
    Transformer layers' own; any other dropout call on the path fails the test (it could
    hide from the count)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.depth: dict[int, tuple[torch.Tensor, int]] = {}  # id -> (the tensor, kept alive; depth)
        self.applying: str | None = None  # "counted" or "layer" while an nn.Dropout runs
        for owner in model.modules():
            kind = "layer" if type(owner).__module__ == transformer.__name__ else "counted"
            for child in owner.children():
                if isinstance(child, nn.Dropout):
                    child.register_forward_pre_hook(lambda _m, _args, kind=kind: setattr(self, "applying", kind))
                    child.register_forward_hook(lambda _m, _args, _out: setattr(self, "applying", None))

    def mark(self, value) -> None:
        for t in tree_leaves(value):
            if isinstance(t, torch.Tensor):
                self.depth[id(t)] = (t, 0)

    def of(self, t) -> int | None:
        kept = self.depth.get(id(t)) if isinstance(t, torch.Tensor) else None
        return kept[1] if kept is not None and kept[0] is t else None

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        depths = [d for t in tree_leaves((args, kwargs)) if (d := self.of(t)) is not None]
        if not depths:
            return out
        if func is F.dropout:
            assert self.applying is not None, "a dropout outside any nn.Dropout module: the count cannot see it"
        depth = max(depths) + (func is F.dropout and self.applying == "counted")
        targets = list(tree_leaves(out))
        name = getattr(func, "__name__", "")
        if name == "__setitem__" or (name.endswith("_") and not name.startswith("_")):
            targets.append(args[0])  # an in-place op carries its inputs into its first argument
        for t in targets:
            if isinstance(t, torch.Tensor):
                self.depth[id(t)] = (t, max(depth, self.of(t) or 0))
        return out


def _encoder_states_module(encoder: nn.Module) -> nn.Module:
    """The module whose output is the encoder's contextual states, before anything umt adds."""
    if isinstance(encoder, WordEncoder):
        return encoder.lstm
    assert isinstance(encoder, PretrainedEncoder)
    return encoder.model


def _model_and_batch(name: str, encoder_dir) -> tuple[nn.Module, object]:
    recipe = get_recipe(name)
    words = recipe.text_side().kind == "words"
    config = ModelConfig(encoder=str(encoder_dir), word_vectors="random" if words else "", **SMALL, dropout=0.5)
    text = recipe.text_side().create(config, POSTS)
    vocab = LabelVocab.from_types(["PER", "LOC", "ORG"])
    model = recipe.build(config, vocab, text)
    rows = [MnerDataset(POSTS, text, vocab)[i] for i in range(len(POSTS))]
    grids = torch.randn(len(rows), 49, 2048)
    batch = Collator(text, GridShape(7, 7, 2048) if recipe.multimodal else None)(
        [(item, grids[i], True) for i, (item, _, _) in enumerate(rows)]
    )
    return model, batch


@pytest.mark.parametrize("name", model_names())
def test_the_encoder_states_are_dropped_out_once_before_the_emissions(name, tiny_encoder_dir):
    torch.manual_seed(0)
    model, batch = _model_and_batch(name, tiny_encoder_dir)
    model.train()
    mode = DropoutsInSeries(model)
    _encoder_states_module(model.encoder).register_forward_hook(lambda _m, _args, out: mode.mark(out))
    with mode:
        emissions, span_emissions = model.emissions(batch)
    assert mode.of(emissions) == 1, f"{name}: {mode.of(emissions)} dropouts in series before the emissions"
    if span_emissions is not None:
        assert mode.of(span_emissions) == 1


def test_the_count_sees_a_second_dropout_in_series(tiny_encoder_dir):
    """The counter itself: a word encoder that drops its output again is caught."""
    torch.manual_seed(0)
    model, batch = _model_and_batch("bilstm-crf", tiny_encoder_dir)
    model.train()
    mode = DropoutsInSeries(model)
    model.encoder.lstm.register_forward_hook(lambda _m, _args, out: mode.mark(out))
    again = model.encoder.dropout  # the embeddings' dropout module, applied once more to the output
    model.encoder.register_forward_hook(lambda _m, _args, out: setattr(out, "states", again(out.states)))
    with mode:
        emissions, _ = model.emissions(batch)
    assert mode.of(emissions) == 2
