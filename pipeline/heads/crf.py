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

import numpy as np
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

        The recursions run in NumPy float64, as products of probabilities rescaled at every
        step (the scaled forward-backward), then are taken back to logs: a window is a few dozen
        steps over K labels, where each torch or log-space call costs more than its arithmetic.
        """
        e = _float64(emissions)  # (n, K)
        n = e.shape[0]
        trans = _float64(self.crf.transitions)  # (K, K) from -> to
        start, end = _float64(self.crf.start_transitions), _float64(self.crf.end_transitions)  # (K,)
        alpha, beta = _forward_backward(e, trans, start, end)  # (n, K) each, logs
        log_z = _logsumexp(alpha[n - 1] + end, axis=0)

        def closed(first: int, score: float, entity: Entity) -> float:
            """``score`` of the entity's first word labelled ``first``, carried to its end and past it."""
            label = first
            for t in range(entity.start + 1, entity.end):
                score = score + trans[label, entity.inside] + e[t, entity.inside]
                label = entity.inside
            if entity.end == n:
                return score + end[label]
            tail = trans[label] + e[entity.end] + beta[entity.end]  # (K,)
            tail[entity.inside] = -np.inf
            return score + _logsumexp(tail, axis=0)

        out = []
        for entity in entities:
            s, b, i = entity.start, entity.begin, entity.inside
            if s == 0:
                open_inside = start[i] + e[0, i]
            else:
                before = alpha[s - 1] + trans[:, i]  # (K,)
                before[[b, i]] = -np.inf
                open_inside = _logsumexp(before, axis=0) + e[s, i]
            cases = np.array([closed(b, alpha[s, b], entity), closed(i, open_inside, entity)])
            out.append(float(np.clip(np.exp(_logsumexp(cases, axis=0) - log_z), 0.0, 1.0)))
        return out


def _float64(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def _forward_backward(
    e: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log forward scores alpha (emission included) and log backward scores beta (emission
    excluded), (n, K) each, of emissions ``e`` (n, K). Each step multiplies probabilities
    scaled to a maximum of 1 and keeps the log of the scale. Scores so far apart that every
    product of a step underflows (over ~700 between labels) are recomputed in log space."""
    n, _ = e.shape
    top_t = trans.max()
    step = np.exp(trans - top_t)  # (K, K)
    top_e = e.max(axis=1)  # (n,)
    emit = np.exp(e - top_e[:, None])  # (n, K)
    alpha, beta = np.empty_like(e), np.empty_like(e)
    log_alpha_scale, log_beta_scale = np.empty(n), np.empty(n)
    first = start + e[0]
    alpha[0] = np.exp(first - first.max())
    log_alpha_scale[0] = first.max()
    for t in range(1, n):
        carried = (alpha[t - 1] @ step) * emit[t]  # (K,)
        scale = carried.max()
        if not scale > 0:
            return _log_forward_backward(e, trans, start, end)
        alpha[t] = carried / scale
        log_alpha_scale[t] = log_alpha_scale[t - 1] + np.log(scale) + top_t + top_e[t]
    beta[n - 1] = np.exp(end - end.max())
    log_beta_scale[n - 1] = end.max()
    for t in range(n - 2, -1, -1):
        carried = step @ (emit[t + 1] * beta[t + 1])  # (K,)
        scale = carried.max()
        if not scale > 0:
            return _log_forward_backward(e, trans, start, end)
        beta[t] = carried / scale
        log_beta_scale[t] = log_beta_scale[t + 1] + np.log(scale) + top_t + top_e[t + 1]
    with np.errstate(divide="ignore"):
        return np.log(alpha) + log_alpha_scale[:, None], np.log(beta) + log_beta_scale[:, None]


def _log_forward_backward(
    e: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_forward_backward` in log space throughout (slower, for extreme scores)."""
    n, _ = e.shape
    alpha, beta = np.empty_like(e), np.empty_like(e)
    alpha[0] = start + e[0]
    for t in range(1, n):
        alpha[t] = _logsumexp(alpha[t - 1][:, None] + trans, axis=0) + e[t]
    beta[n - 1] = end
    for t in range(n - 2, -1, -1):
        beta[t] = _logsumexp(trans + (e[t + 1] + beta[t + 1])[None, :], axis=1)
    return alpha, beta


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    """log(sum(exp(x))) along ``axis``, stable, and -inf where every term is -inf."""
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.squeeze(top + np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)), axis=axis)
