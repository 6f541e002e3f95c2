"""A linear-chain CRF over the words of each window (eq. 4-5), on top of pytorch-crf.

Both heads (CRF and softmax) share one interface, so a tagger takes either:
``loss(emissions, tags, mask)`` -> scalar and ``decode(emissions, mask)`` -> tag ids per window.
``mask`` (B, W) bool marks real words; words are packed to the left (a prefix mask).
``entity_probabilities(emissions, entities)`` gives, for one window, the model's probability of
each entity (:class:`Entity`): the confidence ``umt predict`` reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torchcrf import CRF


@dataclass(frozen=True)
class Entity:
    """An entity of one type over words ``start`` .. ``end - 1`` of a window, read as the scores
    read tags (seqeval's default scheme): it opens with its ``begin`` label, or with its
    ``inside`` label after a word that is neither, continues with ``inside`` and ends where the
    next word is not ``inside``."""

    start: int
    end: int
    begin: int  # label id of B-X
    inside: int  # label id of I-X

    def holds(self, tags: Sequence[int]) -> bool:
        """Whether the tag sequence ``tags`` (ids) has exactly this entity."""
        first, before = tags[self.start], tags[self.start - 1] if self.start > 0 else None
        opens = first == self.begin or (first == self.inside and before not in (self.begin, self.inside))
        after = tags[self.end] if self.end < len(tags) else None
        return opens and all(t == self.inside for t in tags[self.start + 1 : self.end]) and after != self.inside


class CRFHead(nn.Module):
    """Transition scores T (plus start/end scores) and the sentence-level NLL / Viterbi decode."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.crf = CRF(num_tags, batch_first=True)

    def loss(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """-log P(y | x) summed over windows, divided by the number of windows (section 2.5).

        (B, W, K) emissions, (B, W) tags, (B, W) bool mask -> scalar. A window with no words
        (e.g. a post made of characters the tokenizer drops) contributes 0. The forward
        algorithm runs in float32, also under mixed precision.
        """
        has_words = mask[:, 0]  # (B,) pytorch-crf needs the first step of every row on
        if not has_words.any():
            return emissions.sum() * 0.0
        log_likelihood = self.crf(emissions[has_words].float(), tags[has_words], mask[has_words], reduction="sum")
        return -log_likelihood / emissions.shape[0]

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """Viterbi: the best tag sequence of each window, as long as its number of real words."""
        has_words = mask[:, 0]  # (B,)
        if not has_words.any():
            return [[] for _ in range(emissions.shape[0])]
        paths = iter(self.crf.decode(emissions[has_words].float(), mask[has_words]))
        return [next(paths) if present else [] for present in has_words.tolist()]

    @torch.no_grad()
    def entity_probabilities(self, emissions: torch.Tensor, entities: Sequence[Entity]) -> list[float]:
        """P(the tags hold exactly ``entity`` | x) for each entity (:meth:`Entity.holds`), summed
        over every tag sequence by forward-backward: the marginal probability of the entity, not
        a softmax of its emissions.

        ``emissions`` (n, K): one window's real words. With log-space forward scores alpha
        (emission included) and backward scores beta (emission excluded), an entity over
        [s, e) of labels B, I is the sum of two disjoint cases, y_s = B and y_s = I after a
        word that is neither::

            open_B = alpha_s(B)
            open_I = logsumexp_{k not in {B, I}} (alpha_s-1(k) + T[k, I]) + e_s(I)   (start(I) + e_0(I) at s = 0)
            chain  = sum_{t=s+1}^{e-1} (T[y_t-1, I] + e_t(I))
            tail   = end_score(y_e-1) if e == n, else logsumexp_{k != I} (T[y_e-1, k] + e_e(k) + beta_e(k))
            P      = sum over the two cases of exp(open + chain + tail - log Z)
        """
        e = emissions.float()  # (n, K)
        n = e.shape[0]
        trans = self.crf.transitions.float()  # (K, K) from -> to
        start, end = self.crf.start_transitions.float(), self.crf.end_transitions.float()  # (K,)
        alpha = [start + e[0]]  # each (K,)
        for t in range(1, n):
            alpha.append(torch.logsumexp(alpha[-1][:, None] + trans, dim=0) + e[t])
        beta = [end]  # beta_{n-1}; built backwards
        for t in range(n - 2, -1, -1):
            beta.append(torch.logsumexp(trans + (e[t + 1] + beta[-1])[None, :], dim=1))
        beta.reverse()
        log_z = torch.logsumexp(alpha[-1] + end, dim=0)

        def closed(first: int, score: torch.Tensor, entity: Entity) -> torch.Tensor:
            """``score`` of the entity's first word labelled ``first``, carried to its end and past it."""
            label = first
            for t in range(entity.start + 1, entity.end):
                score = score + trans[label, entity.inside] + e[t, entity.inside]
                label = entity.inside
            if entity.end == n:
                return score + end[label]
            tail = trans[label] + e[entity.end] + beta[entity.end]  # (K,)
            tail[entity.inside] = float("-inf")
            return score + torch.logsumexp(tail, dim=0)

        out = []
        for entity in entities:
            s, b, i = entity.start, entity.begin, entity.inside
            if s == 0:
                open_inside = start[i] + e[0, i]
            else:
                before = alpha[s - 1] + trans[:, i]  # (K,)
                before[[b, i]] = float("-inf")
                open_inside = torch.logsumexp(before, dim=0) + e[s, i]
            cases = torch.stack([closed(b, alpha[s][b], entity), closed(i, open_inside, entity)])
            out.append(float(torch.exp(torch.logsumexp(cases, dim=0) - log_z).clamp(0.0, 1.0)))
        return out
