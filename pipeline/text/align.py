"""Sub-word alignment: from a post's words to encoder windows, without losing any word.

The model labels words, the encoder reads sub-word pieces. For every Hugging Face fast
tokenizer this module:

- tokenises each word on its own (as one pre-split word, ``is_split_into_words``), so the
  pieces of a word never depend on the whitespace inside or around tokens; pieces are cached
  per distinct word and a post's unseen words are tokenised in one batch call, which keeps
  a whole dataset (8,000 tweets) to a second or two;
- lets the FIRST piece of each word carry the word (``word_index`` gives its position), as the
  BERT paper and the UMT code do;
- gives a word that yields no piece at all (U+200B, U+00A0, U+00AD: BERT's normaliser deletes
  them) the unknown token, so that it still has a position and gets a prediction; such words
  are labelled O in the data but are still scored;
- truncates a word with more pieces than a window can hold to its first pieces (only the
  first one is read);
- splits a post longer than ``max_length`` pieces (special tokens included) into windows of
  whole words (:func:`umt.pipeline.text.base.window_spans`): consecutive windows overlap by up
  to ``stride`` pieces of context, each word is owned by exactly one window, and
  ``keep_from``/``keep_to`` give the owned range; merging the owned ranges in order gives
  exactly one prediction per word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from umt.pipeline.errors import ConfigError
from umt.pipeline.text.base import Window, window_spans

DEFAULT_MAX_LENGTH = 128
#: Default overlap between windows, as a fraction of the pieces a window holds.
DEFAULT_STRIDE_FRACTION = 0.25
#: Any ordinary word; tokenised once to learn where the tokenizer puts its special tokens.
PROBE_WORD = "a"


@dataclass(frozen=True)
class PieceWindow(Window):
    """One encoder input: pieces with special tokens, and where each word's first piece is."""

    input_ids: list[int]  # with the tokenizer's special tokens ([CLS] ... [SEP])
    word_index: list[int]  # position in input_ids of the first piece of each word of the window

    def __len__(self) -> int:
        return len(self.word_index)

    @property
    def positions(self) -> int:
        return len(self.input_ids)


def _special_frame(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """The special-token ids the tokenizer puts before and after a single sequence."""
    encoding = tokenizer([PROBE_WORD], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = encoding["input_ids"], encoding.word_ids()
    positions = [i for i, word in enumerate(word_ids) if word is not None]
    return ids[: positions[0]], ids[positions[-1] + 1 :]


class Aligner:
    """Turns posts (lists of words) into :class:`Window` s for one tokenizer and window size."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, max_length: int = DEFAULT_MAX_LENGTH, stride: int | None = None
    ):
        if not tokenizer.is_fast:
            raise ValueError("alignment needs a fast tokenizer (word ids)")
        self.tokenizer = tokenizer
        self.prefix, self.suffix = _special_frame(tokenizer)
        self.max_length = max_length
        self.budget = max_length - len(self.prefix) - len(self.suffix)  # pieces of words per window
        if self.budget < 1:
            raise ConfigError(
                f"max_length={max_length} leaves no room for words beside the tokenizer's "
                f"{max_length - self.budget} special tokens (--set max_length=N, N > {max_length - self.budget})"
            )
        self.stride = int(self.budget * DEFAULT_STRIDE_FRACTION) if stride is None else stride
        if not 0 <= self.stride < self.budget:
            raise ConfigError(f"--set stride={self.stride}: must be in [0, {self.budget}) for max_length={max_length}")
        self._pieces: dict[str, list[int]] = {}

    def _learn(self, words: Iterable[str]) -> None:
        """Tokenise the words not seen yet, in one batch call."""
        unseen = list(dict.fromkeys(w for w in words if w not in self._pieces))
        if not unseen:
            return
        encoded = self.tokenizer([[w] for w in unseen], is_split_into_words=True, add_special_tokens=False)["input_ids"]
        for word, ids in zip(unseen, encoded, strict=True):
            if not ids:
                if self.tokenizer.unk_token_id is None:
                    raise ValueError(f"word {word!r} yields no piece and the tokenizer has no unknown token")
                ids = [self.tokenizer.unk_token_id]
            self._pieces[word] = ids[: self.budget]

    def pieces(self, tokens: Sequence[str]) -> list[list[int]]:
        """The piece ids of each word (at least one, at most a window's worth)."""
        self._learn(tokens)
        return [self._pieces[w] for w in tokens]

    def windows(self, tokens: Sequence[str]) -> list[PieceWindow]:
        """The windows of one post; every word is owned by exactly one of them."""
        if not tokens:
            return []
        pieces = self.pieces(tokens)
        windows = []
        for span in window_spans([len(p) for p in pieces], self.budget, self.stride):
            input_ids, word_index = list(self.prefix), []
            for word_pieces in pieces[span.start : span.end]:
                word_index.append(len(input_ids))
                input_ids.extend(word_pieces)
            input_ids.extend(self.suffix)
            windows.append(
                PieceWindow(
                    offset=span.start,
                    keep_from=span.own_from - span.start,
                    keep_to=span.own_to - span.start,
                    input_ids=input_ids,
                    word_index=word_index,
                )
            )
        return windows
