"""Packed rows: first fit, the block mask, and encoders whose packed states are their padded ones."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BertConfig,
    BertModel,
    DistilBertConfig,
    DistilBertModel,
    RobertaConfig,
    RobertaModel,
    XLMRobertaConfig,
    XLMRobertaModel,
)

from umt.pipeline.batch import SubwordInputs
from umt.pipeline.modules.encoders import PretrainedEncoder
from umt.pipeline.packing import FirstFit, PackedRows, first_fit

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=120)


@pytest.mark.parametrize("seed", range(5))
def test_first_fit_places_every_window_once_within_its_rows(seed):
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (int(torch.randint(1, 40, (1,), generator=rng)),), generator=rng).tolist()
    width = max(lengths)
    rows = first_fit(lengths, width)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= width for row in rows)
    # first fit: no window could have gone into an earlier row that had room when it was placed
    placed = {i: r for r, row in enumerate(rows) for i in row}
    room = [width] * len(rows)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        assert all(room[r] < lengths[i] for r in range(placed[i]))
        room[placed[i]] -= lengths[i]


def test_first_fit_refuses_a_window_wider_than_its_rows():
    with pytest.raises(ValueError, match="does not fit"):
        FirstFit(4).add(5)
    assert first_fit([4, 2, 2, 3, 1], 4) == [[0], [3, 4], [1, 2]]


def test_packed_rows_keep_each_position_and_attend_within_each_window():
    lengths = [5, 2, 3, 1]
    rows = PackedRows.of(lengths, 5)  # rows: [0], [2, 1], [3]
    assert rows.segment.tolist() == [[0] * 5, [0, 0, 0, 1, 1], [0, -1, -1, -1, -1]]
    states = torch.arange(4 * 5, dtype=torch.float32).view(4, 5, 1)  # state = flat position
    packed = rows.pack(states)
    assert packed[rows.real].view(-1).tolist() == [0, 1, 2, 3, 4, 10, 11, 12, 5, 6, 15]
    back = rows.unpack(packed, 4)
    real = torch.arange(5)[None, :] < torch.tensor(lengths)[:, None]
    assert torch.equal(back[real], states[real]) and not back[~real].any()
    attend = rows.attention()[:, 0]  # (R, L, L)
    assert attend[1, :3, :3].all() and not attend[1, :3, 3:].any() and not attend[1, 3:, :3].any()
    assert attend[2].tolist()[1] == [False, True, False, False, False]  # an empty slot attends itself
    assert attend.any(-1).all()


def _batch(lengths, vocab, seed=0):
    rng = torch.Generator().manual_seed(seed)
    size, width = len(lengths), max(lengths)
    ids = torch.ones(size, width, dtype=torch.long)  # 1: the RoBERTa family's padding id
    mask = torch.zeros(size, width, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(3, vocab, (n,), generator=rng)
        mask[b, :n] = 1
    return SubwordInputs(ids, mask, torch.zeros(size, 1, dtype=torch.long))


@pytest.mark.parametrize(
    "model",
    [
        lambda: BertModel(BertConfig(**SMALL, pad_token_id=1)),
        lambda: RobertaModel(RobertaConfig(**SMALL, pad_token_id=1, max_position_embeddings=40)),
        lambda: XLMRobertaModel(XLMRobertaConfig(**SMALL, pad_token_id=1, max_position_embeddings=40)),
    ],
    ids=["bert", "roberta", "xlm-roberta"],
)
def test_a_packed_batch_has_the_states_of_the_padded_one(model, monkeypatch):
    torch.manual_seed(0)
    encoder = PretrainedEncoder(model()).eval()
    assert encoder.packs
    inputs = _batch([9, 3, 5, 2, 9, 4, 1, 6], SMALL["vocab_size"])
    calls = []
    packed = PretrainedEncoder._packed
    monkeypatch.setattr(PretrainedEncoder, "_packed", lambda self, x: calls.append(1) or packed(self, x))
    with torch.no_grad():
        got = encoder(inputs).states
        encoder.packs = False
        padded = encoder(inputs).states
    real = inputs.attention_mask.bool()
    assert calls == [1]
    assert torch.allclose(got[real], padded[real], atol=1e-5)
    assert not got[~real].any()


def test_training_and_unpackable_encoders_run_the_padded_batch(monkeypatch):
    monkeypatch.setattr(PretrainedEncoder, "_packed", lambda self, x: pytest.fail("packed"))
    inputs = _batch([4, 2], SMALL["vocab_size"])
    bert = PretrainedEncoder(BertModel(BertConfig(**SMALL)))
    bert.train()(inputs)  # training: padded, dropout and all
    eager = BertModel(BertConfig(**SMALL, attn_implementation="eager"))
    distil = DistilBertModel(DistilBertConfig(vocab_size=120, dim=32, n_layers=1, n_heads=2, hidden_dim=64))
    relative = BertModel(BertConfig(**SMALL, position_embedding_type="relative_key"))  # transformers 4's kind
    for model in (eager, distil, relative):
        assert not PretrainedEncoder(model).packs
