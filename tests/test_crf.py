"""The CRF and softmax heads against brute force: every tag sequence enumerated on tiny sizes."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from umt.pipeline.heads.crf import CRFHead
from umt.pipeline.heads.softmax import SoftmaxHead

NUM_TAGS = 3
MAX_WORDS = 4
LENGTHS = (4, 2, 1, 3)  # words per window: full, shorter, a single word, ...


def _head(seed: int = 0) -> CRFHead:
    torch.manual_seed(seed)
    head = CRFHead(NUM_TAGS)
    with torch.no_grad():  # larger than pytorch-crf's U(-0.1, 0.1) start, so transitions matter
        for param in head.crf.parameters():
            param.normal_(std=1.0)
    return head


def _prefix_mask(lengths) -> torch.Tensor:
    return torch.arange(MAX_WORDS)[None, :] < torch.tensor(lengths)[:, None]  # (B, W)


def _score(head: CRFHead, emissions: torch.Tensor, tags: tuple[int, ...]) -> torch.Tensor:
    """score(x, y) of eq. 5 for one window: start + emissions + transitions + end."""
    crf = head.crf
    total = crf.start_transitions[tags[0]] + crf.end_transitions[tags[-1]]
    for i, tag in enumerate(tags):
        total = total + emissions[i, tag]
        if i:
            total = total + crf.transitions[tags[i - 1], tag]
    return total


def _brute_force(head: CRFHead, emissions: torch.Tensor, length: int):
    """log Z and the best sequence of one window, by enumerating all NUM_TAGS**length sequences."""
    paths = list(itertools.product(range(NUM_TAGS), repeat=length))
    scores = torch.stack([_score(head, emissions[:length], path) for path in paths])
    return torch.logsumexp(scores, dim=0), list(paths[int(scores.argmax())])


def test_crf_loss_is_the_mean_sentence_nll_of_brute_force():
    head = _head()
    torch.manual_seed(1)
    emissions = torch.randn(len(LENGTHS), MAX_WORDS, NUM_TAGS) * 2  # (B, W, K)
    tags = torch.randint(NUM_TAGS, (len(LENGTHS), MAX_WORDS))  # (B, W) anything on padding
    mask = _prefix_mask(LENGTHS)
    expected = 0.0
    for b, length in enumerate(LENGTHS):
        log_z, _ = _brute_force(head, emissions[b], length)
        gold = tuple(tags[b, :length].tolist())
        expected += log_z - _score(head, emissions[b], gold)
    expected /= len(LENGTHS)
    assert torch.allclose(head.loss(emissions, tags, mask), expected, atol=1e-5)


def test_crf_viterbi_matches_brute_force_argmax():
    for seed in range(5):
        head = _head(seed)
        torch.manual_seed(100 + seed)
        emissions = torch.randn(len(LENGTHS), MAX_WORDS, NUM_TAGS) * 2
        decoded = head.decode(emissions, _prefix_mask(LENGTHS))
        expected = [_brute_force(head, emissions[b], n)[1] for b, n in enumerate(LENGTHS)]
        assert decoded == expected


def test_crf_padding_emissions_and_tags_do_not_matter():
    head = _head()
    torch.manual_seed(2)
    emissions = torch.randn(len(LENGTHS), MAX_WORDS, NUM_TAGS)
    tags = torch.randint(NUM_TAGS, (len(LENGTHS), MAX_WORDS))
    mask = _prefix_mask(LENGTHS)
    noisy = emissions.masked_fill(~mask[..., None], 1e3)  # huge scores on padding words
    other_tags = tags.masked_fill(~mask, NUM_TAGS - 1)
    assert torch.allclose(head.loss(emissions, tags, mask), head.loss(noisy, other_tags, mask))
    assert head.decode(emissions, mask) == head.decode(noisy, mask)


def test_crf_window_without_words_adds_nothing_and_decodes_empty():
    head = _head()
    torch.manual_seed(3)
    emissions = torch.randn(3, MAX_WORDS, NUM_TAGS, requires_grad=True)
    tags = torch.randint(NUM_TAGS, (3, MAX_WORDS))
    mask = _prefix_mask((2, 0, 3))
    loss = head.loss(emissions, tags, mask)
    kept = torch.tensor([0, 2])
    alone = head.loss(emissions[kept], tags[kept], mask[kept])
    assert torch.allclose(loss, alone * 2 / 3)  # the sum over windows is divided by all 3 windows
    loss.backward()
    assert torch.isfinite(emissions.grad).all() and not emissions.grad[1].any()
    decoded = head.decode(emissions.detach(), mask)
    assert [len(path) for path in decoded] == [2, 0, 3]
    empty = torch.zeros(2, MAX_WORDS, dtype=torch.bool)
    assert head.loss(emissions[:2], tags[:2], empty).item() == 0.0
    assert head.decode(emissions[:2].detach(), empty) == [[], []]


def test_crf_loss_runs_in_float32_under_half_precision_emissions():
    head = _head()
    torch.manual_seed(4)
    emissions = torch.randn(len(LENGTHS), MAX_WORDS, NUM_TAGS)
    tags = torch.randint(NUM_TAGS, (len(LENGTHS), MAX_WORDS))
    mask = _prefix_mask(LENGTHS)
    half = head.loss(emissions.half(), tags, mask)
    assert half.dtype == torch.float32
    assert torch.allclose(half, head.loss(emissions.half().float(), tags, mask))


@pytest.mark.parametrize("lengths", [LENGTHS, (0, 2, 0, 1)])
def test_softmax_head_is_cross_entropy_over_real_words_and_argmax(lengths):
    head = SoftmaxHead()
    torch.manual_seed(5)
    emissions = torch.randn(len(lengths), MAX_WORDS, NUM_TAGS)
    tags = torch.randint(NUM_TAGS, (len(lengths), MAX_WORDS))
    mask = _prefix_mask(lengths)
    rows = [(b, i) for b, n in enumerate(lengths) for i in range(n)]
    expected = torch.stack([F.cross_entropy(emissions[b, i][None], tags[b, i][None]) for b, i in rows]).mean()
    assert torch.allclose(head.loss(emissions, tags, mask), expected)
    decoded = head.decode(emissions, mask)
    assert decoded == [emissions[b, :n].argmax(-1).tolist() for b, n in enumerate(lengths)]
