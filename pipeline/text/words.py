"""The word-level text side of the BiLSTM baselines: words -> vocabulary, character and casing ids.

Vocabulary (a run's ``text/vocab.json``, so a run reloads without the vectors file):
``<pad>``, ``<unk>``, then the words of the pre-trained vectors that are kept (the file's first
``vectors_limit`` words and every training word it has), then the training words the vectors
lack. Words are looked up as they are, then lower-cased; with lower-case vectors (GloVe 6B)
they are lower-cased first. Kept vectors initialise their rows; the other rows, training
words without a vector, start random (uniform in +-sqrt(3 / dim), Ma and Hovy's choice) and
every row is fine-tuned. With ``--word-vectors random`` every row starts random.

Characters: every character of the training words (case kept), ``<unk>`` for the others; a
word's first :data:`MAX_WORD_CHARS` characters are read (a URL is cut there).

Windows: ``max_length`` is in words here (the paper sets 128 for every system, section 3.1). A
longer post is cut into windows of at most that many words, overlapping by ``stride`` words of
context, each word owned by one window, exactly as the sub-word side cuts pieces
(:func:`umt.pipeline.text.base.window_spans`): nothing is truncated and every word is tagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from umt.pipeline.batch import WordInputs
from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.files import read_json_file, write_json
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.modules.word_encoder import WordEncoder
from umt.pipeline.text.base import TextSide, Window, window_spans
from umt.pipeline.text.vectors import RANDOM, check_word_vectors, load_word_vectors

PAD, UNKNOWN = "<pad>", "<unk>"
MAX_WORD_CHARS = 30
VOCAB_FILE = "vocab.json"
#: Casing categories (0 is padding): Huang et al.'s spelling features, reduced to one id per word.
CASINGS = ("<pad>", "lower", "upper", "title", "mixed", "numeric", "has_digit", "other")


def casing(word: str) -> int:
    """The casing category of ``word`` (an index into :data:`CASINGS`)."""
    if word.isdigit():
        name = "numeric"
    elif any(c.isdigit() for c in word):
        name = "has_digit"
    elif not any(c.isalpha() for c in word):
        name = "other"
    elif word.islower():
        name = "lower"
    elif word.isupper():
        name = "upper"
    elif word[0].isupper() and (len(word) == 1 or word[1:].islower()):
        name = "title"
    else:
        name = "mixed"
    return CASINGS.index(name)


@dataclass(frozen=True)
class WordWindow(Window):
    word_ids: list[int]
    char_ids: list[list[int]]
    casing: list[int]

    def __len__(self) -> int:
        return len(self.word_ids)


class WordTextSide(TextSide):
    """Word, character and casing vocabularies; ``vectors`` names where the embeddings came from."""

    kind = "words"

    def __init__(
        self,
        words: list[str],
        chars: list[str],
        lowercase: bool,
        dim: int,
        vectors: str,
        model_cfg: ModelConfig,
        pretrained: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        self.words, self.chars, self.lowercase, self.dim, self.vectors = words, chars, lowercase, dim, vectors
        self.max_length, self.stride = model_cfg.max_length, model_cfg.stride  # in words
        self.word_index = {w: i for i, w in enumerate(words)}
        self.char_index = {c: i for i, c in enumerate(chars)}
        self.pretrained = pretrained  # (rows, (len(rows), dim) vectors) for a new run; None once reloaded

    @classmethod
    def create(cls, model_cfg: ModelConfig, train_posts: Sequence[Post]) -> WordTextSide:
        check_word_vectors(model_cfg)
        counts = Counter(w for post in train_posts for w in post.tokens)
        chars = [PAD, UNKNOWN, *sorted({c for w in counts for c in w[:MAX_WORD_CHARS]})]
        if model_cfg.word_vectors == RANDOM:
            words = [PAD, UNKNOWN, *sorted(counts, key=lambda w: (-counts[w], w))]
            return cls(words, chars, lowercase=False, dim=model_cfg.word_dim, vectors=RANDOM, model_cfg=model_cfg)
        vectors = load_word_vectors(model_cfg.word_vectors, model_cfg.vectors_limit, counts)
        lowercase = vectors.lowercase
        words, rows, seen = [PAD, UNKNOWN], [], {PAD, UNKNOWN}
        for row, word in enumerate(vectors.words):
            if word not in seen:
                seen.add(word)
                words.append(word)
                rows.append(row)
        pretrained = (np.arange(2, len(words)), vectors.matrix[rows])
        train_words = {w.lower() if lowercase else w for w in counts}
        words.extend(sorted(train_words - seen))
        source = str(Path(model_cfg.word_vectors).expanduser().resolve())
        return cls(words, chars, lowercase, vectors.dim, source, model_cfg, pretrained)

    @classmethod
    def load(cls, folder: Path, model_cfg: ModelConfig) -> WordTextSide:
        path = folder / VOCAB_FILE
        saved = read_json_file(path)
        try:
            words, chars, lowercase, dim, vectors = (
                saved["words"],
                saved["chars"],
                saved["lowercase"],
                saved["dim"],
                saved["vectors"],
            )
            if not all(isinstance(v, list) and all(isinstance(x, str) for x in v) for v in (words, chars)):
                raise TypeError("'words' and 'chars' must be lists of strings")
            if not isinstance(lowercase, bool) or not isinstance(vectors, str):
                raise TypeError("'lowercase' must be true or false and 'vectors' a string")
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1 or len(words) < 2 or len(chars) < 2:
                raise ValueError("'dim' must be a positive integer, with <pad> and <unk> in both vocabularies")
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{path}: not a word-level text side written by `umt train` ({error})") from None
        return cls(words, chars, lowercase, dim, vectors, model_cfg)

    def save(self, folder: Path) -> None:
        saved = {
            "vectors": self.vectors,
            "lowercase": self.lowercase,
            "dim": self.dim,
            "words": self.words,
            "chars": self.chars,
        }
        write_json(folder / VOCAB_FILE, saved)

    def word_id(self, word: str) -> int:
        key = word.lower() if self.lowercase else word
        found = self.word_index.get(key)
        if found is None:
            found = self.word_index.get(key.lower(), 1)
        return found

    def windows(self, tokens: Sequence[str]) -> list[WordWindow]:
        unknown = self.char_index[UNKNOWN]
        windows = []
        for span in window_spans([1] * len(tokens), self.max_length, self.stride):
            words = tokens[span.start : span.end]
            windows.append(
                WordWindow(
                    offset=span.start,
                    keep_from=span.own_from - span.start,
                    keep_to=span.own_to - span.start,
                    word_ids=[self.word_id(w) for w in words],
                    char_ids=[[self.char_index.get(c, unknown) for c in w[:MAX_WORD_CHARS]] for w in words],
                    casing=[casing(w) for w in words],
                )
            )
        return windows

    def collate(self, windows: Sequence[WordWindow]) -> WordInputs:
        width = max(len(w) for w in windows)
        longest = max(1, max((len(chars) for w in windows for chars in w.char_ids), default=1))

        def padded(row: list, fill, size: int) -> list:
            return row + [fill] * (size - len(row))

        no_chars = [0] * longest
        word_ids = torch.tensor([padded(w.word_ids, 0, width) for w in windows])  # (B, W)
        cases = torch.tensor([padded(w.casing, 0, width) for w in windows])  # (B, W)
        char_ids = torch.tensor(  # (B, W, C)
            [padded([padded(chars, 0, longest) for chars in w.char_ids], no_chars, width) for w in windows]
        )
        mask = torch.arange(width)[None, :] < torch.tensor([len(w) for w in windows])[:, None]  # (B, W)
        return WordInputs(word_ids, char_ids, cases, mask)

    def build_encoder(self, model_cfg: ModelConfig) -> WordEncoder:
        encoder = WordEncoder(len(self.words), self.dim, len(self.chars), len(CASINGS), model_cfg)
        if self.pretrained is not None:
            rows, vectors = self.pretrained
            with torch.no_grad():
                encoder.embedding.weight[torch.from_numpy(rows)] = torch.from_numpy(np.ascontiguousarray(vectors))
        return encoder

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "vectors": self.vectors,
            "dim": self.dim,
            "lowercase": self.lowercase,
            "words": len(self.words),
            "chars": len(self.chars),
        }
