"""The word-level text side of the BiLSTM baselines: vectors in every layout users have, the
vocabularies, lower-casing that follows the vectors, initialisation, and the encoder's shapes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from umt.pipeline.data.types import Post
from umt.pipeline.errors import ConfigError
from umt.pipeline.models.config import ModelConfig
from umt.pipeline.text.vectors import load_word_vectors
from umt.pipeline.text.words import CASINGS, MAX_WORD_CHARS, PAD, UNKNOWN, WordTextSide, casing

WORDS = ["the", "paris", "visits", "anna", "of", "rare"]
MATRIX = np.arange(len(WORDS) * 4, dtype=np.float32).reshape(len(WORDS), 4) / 10


def _glove(path, words=WORDS, matrix=MATRIX, header=False):
    lines = [f"{len(words)} {matrix.shape[1]}"] if header else []
    lines += [" ".join([w, *(f"{x:.1f}" for x in row)]) for w, row in zip(words, matrix, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _posts(*sentences: str) -> list[Post]:
    return [Post(s.split(), ["O"] * len(s.split()), None) for s in sentences]


@pytest.mark.parametrize("layout", ["glove", "word2vec", "npy+txt", "npy+parquet", "folder"])
def test_every_vectors_layout_loads_the_same_words_and_numbers(tmp_path, layout):
    if layout in ("glove", "word2vec"):
        path = _glove(tmp_path / "vectors.txt", header=layout == "word2vec")
    else:
        np.save(tmp_path / "emb.npy", MATRIX)
        if layout == "npy+parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"index": WORDS}), tmp_path / "index.parquet")
        else:
            (tmp_path / "emb.vocab").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
        path = tmp_path if layout == "folder" else tmp_path / "emb.npy"
    vectors = load_word_vectors(path, limit=100)
    assert vectors.words == WORDS
    np.testing.assert_allclose(vectors.matrix, MATRIX, atol=1e-6)
    assert vectors.lowercase


def test_limit_keeps_the_most_frequent_words_and_every_wanted_one(tmp_path):
    path = _glove(tmp_path / "v.txt")
    vectors = load_word_vectors(path, limit=2, wanted={"Anna", "rare", "unseen"})
    assert vectors.words == ["the", "paris", "anna", "rare"]  # "Anna" matched lower-cased
    np.testing.assert_allclose(vectors.matrix[2], MATRIX[3], atol=1e-6)


def test_bad_vectors_are_reported_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("the 0.1 0.2\nparis 0.3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.txt:2: expected a word and 2 numbers"):
        load_word_vectors(bad, limit=10)
    bad.write_text("the 0.1 0.2\nparis 0.3 x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.txt:2: the vector of 'paris' is not 2 numbers"):
        load_word_vectors(bad, limit=10)
    np.save(tmp_path / "m.npy", MATRIX)
    with pytest.raises(ConfigError, match="need exactly one vocabulary file beside it"):
        load_word_vectors(tmp_path / "m.npy", limit=10)
    (tmp_path / "m.vocab").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"shape \(6, 4\) does not match the 2 words"):
        load_word_vectors(tmp_path / "m.npy", limit=10)
    with pytest.raises(ConfigError, match="do not exist.*--word-vectors random"):
        load_word_vectors(tmp_path / "nowhere.txt", limit=10)


def _side(tmp_path, posts, vectors="glove", **kw) -> WordTextSide:
    source = "random" if vectors == "random" else str(_glove(tmp_path / "v.txt", **kw))
    return WordTextSide.create(ModelConfig(word_vectors=source, vectors_limit=3, word_dim=8), posts)


def test_vocabulary_lower_cases_with_lower_case_vectors_and_initialises_from_them(tmp_path):
    side = _side(tmp_path, _posts("Anna visits Paris", "Zoe visits Paris"))
    assert side.lowercase and side.dim == 4
    # pad, unk, the first 3 vectors, the training words the vectors have, then those they lack
    assert side.words == [PAD, UNKNOWN, "the", "paris", "visits", "anna", "zoe"]
    (window,) = side.windows(["Anna", "visits", "ROME"])
    assert window.word_ids == [5, 4, 1]  # an unknown word is <unk>
    torch.manual_seed(0)
    encoder = side.build_encoder(ModelConfig(word_vectors="x", lstm_hidden=6))
    weight = encoder.embedding.weight.detach()
    np.testing.assert_allclose(weight[2:6].numpy(), MATRIX[[0, 1, 2, 3]], atol=1e-6)  # from the vectors
    assert weight[6].abs().max() <= (3 / 4) ** 0.5 and weight[6].abs().sum() > 0  # "zoe": random, trainable
    assert weight[0].abs().sum() == 0 and encoder.embedding.weight.requires_grad


def test_case_is_kept_when_the_vectors_are_cased(tmp_path):
    side = _side(tmp_path, _posts("Anna visits Paris"), words=["The", "Paris", "visits", "Anna", "of", "rare"])
    assert not side.lowercase
    (window,) = side.windows(["Paris", "paris", "Zed"])
    assert window.word_ids[0] == side.words.index("Paris") and window.word_ids[2] == 1
    assert window.word_ids[1] == 1  # no "paris" in the vocabulary: the exact form, then lower-cased, then <unk>


def test_random_embeddings_only_when_asked_and_the_run_reloads_without_vectors(tmp_path):
    with pytest.raises(ConfigError, match="reads word vectors: pass --word-vectors PATH"):
        WordTextSide.create(ModelConfig(), _posts("Anna visits Paris"))
    side = _side(tmp_path, _posts("Anna visits Paris", "Anna sleeps"), vectors="random")
    assert side.words == [PAD, UNKNOWN, "Anna", "Paris", "sleeps", "visits"] and side.dim == 8
    assert side.pretrained is None
    side.save(tmp_path)
    again = WordTextSide.load(tmp_path, ModelConfig())
    assert (again.words, again.chars, again.lowercase, again.dim) == (side.words, side.chars, False, 8)
    assert json.loads((tmp_path / "vocab.json").read_text())["vectors"] == "random"


def test_characters_casing_and_collation(tmp_path):
    side = _side(tmp_path, _posts("Anna visits Paris"), vectors="random")
    long_word = "x" * (MAX_WORD_CHARS + 5)
    windows = side.windows(["Anna", "visits", "Paris", "!", long_word]) + side.windows(["Anna"])
    assert side.windows([]) == []
    batch = side.collate(windows)
    assert batch.word_ids.shape == (2, 5) and batch.char_ids.shape == (2, 5, MAX_WORD_CHARS)
    assert batch.mask.tolist() == [[True] * 5, [True, False, False, False, False]]
    chars = [side.chars[i] for i in batch.char_ids[0, 0].tolist() if i]
    assert chars == list("Anna")
    assert batch.char_ids[0, 3, 0].item() == side.chars.index(UNKNOWN)  # "!" is not a training character
    assert [CASINGS[i] for i in batch.casing[0].tolist()] == ["title", "lower", "title", "other", "lower"]
    kinds = [CASINGS[casing(w)] for w in ("USA", "iPhone", "2017", "4ever")]
    assert kinds == ["upper", "mixed", "numeric", "has_digit"]


@pytest.mark.parametrize("chars", ["none", "cnn", "lstm"])
def test_word_encoder_states_are_per_word_and_padding_does_not_leak(tmp_path, chars):
    side = _side(tmp_path, _posts("Anna visits Paris today"), vectors="random")
    config = ModelConfig(
        word_vectors="random", char_encoder=chars, lstm_hidden=5, char_dim=4, char_hidden=3, case_dim=2, dropout=0.0
    )
    torch.manual_seed(0)
    encoder = side.build_encoder(config).eval()
    short = side.collate(side.windows(["Anna", "visits"]))
    padded = side.collate(side.windows(["Anna", "visits"]) + side.windows(["Anna", "visits", "Paris", "today"]))
    alone, together = encoder(short), encoder(padded)
    assert encoder.hidden_size == 10 and together.states.shape == (2, 4, 10)
    assert together.word_index.tolist() == [[0, 1, 2, 3]] * 2
    torch.testing.assert_close(together.states[0, :2], alone.states[0])  # packed: padding changes nothing
