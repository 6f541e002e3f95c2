"""Sub-word alignment and tokenizer loading, with the tiny local WordPiece vocabulary."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import transformers

from umt.pipeline.errors import ConfigError
from umt.pipeline.text.align import Aligner
from umt.pipeline.text.base import window_spans
from umt.pipeline.text.hf import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_encoder_dir):
    return load_tokenizer(str(tiny_encoder_dir))


def owned_words(windows) -> list[int]:
    """Post-level indices of the words each window owns, in window order."""
    return [w.offset + k for w in windows for k in range(w.keep_from, w.keep_to)]


def test_short_post_is_one_window_and_first_pieces_carry_the_words(tokenizer):
    words = ["Great", "to", "see", "Jordan", "xyz", "today"]
    (window,) = Aligner(tokenizer).windows(words)
    pieces = tokenizer.convert_ids_to_tokens(window.input_ids)
    assert pieces[0] == tokenizer.cls_token and pieces[-1] == tokenizer.sep_token
    assert [pieces[i] for i in window.word_index] == ["Great", "to", "see", "Jordan", "x", "today"]
    assert pieces[window.word_index[4] + 1 : window.word_index[5]] == ["##y", "##z"]
    assert (window.offset, window.keep_from, window.keep_to) == (0, 0, len(words))


@pytest.mark.parametrize("invisible", ["\u200b", "\u00a0", "\u00ad", "\u200d", " "])
def test_a_zero_piece_word_gets_the_unknown_token(tokenizer, invisible):
    assert tokenizer([[invisible]], is_split_into_words=True, add_special_tokens=False)["input_ids"] == [[]]
    (window,) = Aligner(tokenizer).windows(["see", invisible, "Paris"])
    assert len(window.word_index) == 3
    assert window.input_ids[window.word_index[1]] == tokenizer.unk_token_id
    assert window.word_index == [1, 2, 3]


def test_whitespace_inside_a_token_does_not_split_the_word(tokenizer):
    (window,) = Aligner(tokenizer).windows(["in", "New York", "today"])
    assert len(window.word_index) == 3
    pieces = tokenizer.convert_ids_to_tokens(window.input_ids)
    assert pieces[window.word_index[1] : window.word_index[2]] == ["N", "##e", "##w", "Y", "##o", "##r", "##k"]


def test_an_over_long_word_is_cut_to_what_a_window_holds(tokenizer):
    aligner = Aligner(tokenizer, max_length=10, stride=2)
    windows = aligner.windows(["see", "x" * 40, "today"])
    assert owned_words(windows) == [0, 1, 2]
    assert all(len(w.input_ids) <= 10 for w in windows)
    assert len(aligner.pieces(["x" * 40])[0]) == aligner.budget == 8


@pytest.mark.parametrize("max_length, stride", [(12, 0), (12, 3), (16, 4), (16, 13), (32, None), (9, 6)])
def test_long_posts_are_windowed_and_every_word_is_owned_once(tokenizer, max_length, stride):
    rng = random.Random(max_length * 100 + (stride or 0))
    vocabulary = ["Great", "to", "Jordan", "abc", "\u200b", "Sydney", "x" * 30, "q"]
    aligner = Aligner(tokenizer, max_length=max_length, stride=stride)
    for _ in range(30):
        words = [rng.choice(vocabulary) for _ in range(rng.randint(1, 60))]
        windows = aligner.windows(words)
        assert owned_words(windows) == list(range(len(words)))
        pieces = aligner.pieces(words)
        for window in windows:
            assert len(window.input_ids) <= max_length
            assert window.input_ids[0] == tokenizer.cls_token_id and window.input_ids[-1] == tokenizer.sep_token_id
            ends = [*window.word_index[1:], len(window.input_ids) - 1]
            for k, (begin, end) in enumerate(zip(window.word_index, ends, strict=True)):
                assert window.input_ids[begin:end] == pieces[window.offset + k]
            assert window.keep_from < window.keep_to
        for left, right in zip(windows, windows[1:], strict=False):
            left_end = left.offset + len(left)
            assert left.offset < right.offset <= left_end < right.offset + len(right)
            overlap = sum(len(pieces[i]) for i in range(right.offset, left_end))
            assert overlap <= aligner.stride
            # the owner of an overlapped word is the window where it has more context
            for i in range(right.offset, left_end):
                owner = left if i < left.offset + left.keep_to else right
                other = right if owner is left else left
                assert context(owner, i) >= context(other, i)


def context(window, word: int) -> int:
    """Words between ``word`` and the window's nearer edge."""
    k = word - window.offset
    return min(k, len(window) - 1 - k)


def test_windows_of_the_paper_length_on_a_long_post(tokenizer):
    words = ["Great", "to", "see", "Jordan", "in", "Paris", "today"] * 40
    windows = Aligner(tokenizer, max_length=128).windows(words)
    assert len(windows) > 2
    assert owned_words(windows) == list(range(len(words)))


def test_empty_post_and_bad_settings(tokenizer):
    assert Aligner(tokenizer).windows([]) == []
    with pytest.raises(ConfigError, match="no room"):
        Aligner(tokenizer, max_length=2)
    with pytest.raises(ConfigError, match="stride"):
        Aligner(tokenizer, max_length=12, stride=10)


# ---- load_tokenizer ----------------------------------------------------------------------


def test_load_tokenizer_from_a_local_folder(tiny_encoder_dir):
    tokenizer = load_tokenizer(str(tiny_encoder_dir))
    assert tokenizer.is_fast and len(tokenizer) > 100
    assert tokenizer.tokenize("Jordan") == ["Jordan"]


@pytest.mark.parametrize("name, words", [("./no/such/folder", "does not exist"), ("missing-dir/", "does not exist")])
def test_missing_local_folder_is_named(name, words):
    with pytest.raises(ConfigError, match=words):
        load_tokenizer(name)


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "vocab.txt").write_text("a\n")
    with pytest.raises(ConfigError, match="not a folder"):
        load_tokenizer(str(tmp_path / "vocab.txt"))


def test_folder_without_a_vocabulary_is_refused(tmp_path):
    """Such a folder would load as a fast tokenizer with only its 5 special tokens: say what it lacks."""
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    with pytest.raises(ConfigError, match=r"lacks config.json .* and a tokenizer .*holds: tokenizer_config.json"):
        load_tokenizer(str(tmp_path))


def test_a_degenerate_vocabulary_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nword\n")
    with pytest.raises(ConfigError, match="only 6 entries"):
        load_tokenizer(str(tmp_path))


def test_hub_name_that_cannot_be_fetched_says_how_to_pass_a_folder(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(ConfigError, match="offline.*--encoder DIR"):
        load_tokenizer("bert-base-cased")


def test_slow_tokenizer_is_refused(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: SimpleNamespace(is_fast=False))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(ConfigError, match="slow"):
        load_tokenizer(str(tmp_path))


@pytest.mark.parametrize("budget,stride", [(1, 0), (3, 1), (5, 2), (8, 3)])
def test_window_spans_own_every_word_once_and_hold_at_most_the_budget(budget, stride):
    """The one definition of window ownership both text sides use (pieces, or words of length 1)."""
    rng = random.Random(budget)
    for _ in range(50):
        lengths = [rng.randint(1, budget) for _ in range(rng.randint(0, 30))]
        spans = window_spans(lengths, budget, stride)
        owned = [i for span in spans for i in range(span.own_from, span.own_to)]
        assert owned == list(range(len(lengths)))  # every word exactly once, in order
        for span in spans:
            assert sum(lengths[span.start : span.end]) <= budget
            assert span.start <= span.own_from < span.own_to <= span.end
        for before, after in itertools.pairwise(spans):
            assert after.start > before.start and sum(lengths[after.start : before.end]) <= stride
