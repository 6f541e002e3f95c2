"""Readers (Twitter format, JSON lines) and the dataset layout, on fixtures written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from umt.pipeline.data.jsonl import read_jsonl
from umt.pipeline.data.layout import (
    DATA_ROOT_ENV,
    default_data_root,
    images_dir,
    load_dataset,
    load_split,
    read_posts,
)
from umt.pipeline.data.twitter import read_twitter
from umt.pipeline.errors import DataFormatError, UmtError

TWO_TWEETS = "IMGID:11\nGeorge\tB-PER\nZimmerman\tI-PER\nsaid\tO\n\nIMGID:12\nin\tO\nParis\tB-LOC\n"


def write(tmp_path: Path, content: str | bytes, name: str = "train.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# ---- Twitter format ----------------------------------------------------------------------


def test_reads_tweets_tokens_labels_images_and_origins(tmp_path):
    path = write(tmp_path, TWO_TWEETS + "\n")
    posts = read_twitter(path)
    assert [p.image for p in posts] == ["11", "12"]
    assert posts[0].tokens == ["George", "Zimmerman", "said"]
    assert posts[0].labels == ["B-PER", "I-PER", "O"]
    assert posts[1].origin == f"{path}:6"


def test_keeps_the_last_tweet_without_a_trailing_blank_line(tmp_path):
    """Twitter-2015's files end right after the last token line."""
    posts = read_twitter(write(tmp_path, TWO_TWEETS.rstrip("\n")))
    assert len(posts) == 2 and posts[1].tokens == ["in", "Paris"]


def test_other_is_read_as_misc(tmp_path):
    posts = read_twitter(write(tmp_path, "IMGID:1\n#SuperBowl\tB-OTHER\nparty\tI-OTHER\nnow\tO\n"))
    assert posts[0].labels == ["B-MISC", "I-MISC", "O"]


def test_crlf_and_byte_order_mark(tmp_path):
    content = "\ufeff" + TWO_TWEETS.replace("\n", "\r\n")
    posts = read_twitter(write(tmp_path, content))
    assert posts[0].image == "11" and posts[1].tokens == ["in", "Paris"] and posts[1].labels[-1] == "B-LOC"


@pytest.mark.parametrize(
    "token", ["\u00a0", "\u200b", "\u200d", "\ufffd", "\u00ad", "\x92", "\x1c", "\u2028", "\u0085", " ", "a\tb"]
)
def test_whitespace_and_control_tokens_are_kept_as_words(tmp_path, token):
    posts = read_twitter(write(tmp_path, f"IMGID:1\nhello\tO\n{token}\tO\nworld\tB-LOC\n"))
    assert posts[0].tokens == ["hello", token, "world"]
    assert posts[0].labels == ["O", "O", "B-LOC"]


def test_layout_tolerances(tmp_path):
    """Several blank lines, a blank line of spaces, a label with trailing spaces, a token spelled
    like an IMGID line, and a new IMGID right after a token line all read unambiguously."""
    content = "\n\nIMGID:1\nIMGID:x\tO\nB\tB-PER \n \n\n\nIMGID:2\nc\tO\nIMGID:3\nd\tO\n"
    posts = read_twitter(write(tmp_path, content))
    assert [(p.image, p.tokens, p.labels) for p in posts] == [
        ("1", ["IMGID:x", "B"], ["O", "B-PER"]),
        ("2", ["c"], ["O"]),
        ("3", ["d"], ["O"]),
    ]


TWITTER_ERRORS = [
    # (content, line of the error, words of the message)
    ("IMGID:1\na\tO\nb\tO\n\nIMGID:2\nc\tO\nd O\n", 7, "without a tab"),
    ("IMGID:1\nGeorge\tB_PER\n", 2, "unknown label 'B_PER'"),
    ("IMGID:1\nGeorge\tX-PER\n", 2, "unknown label"),
    ("IMGID:1\nGeorge\tS-PER\n", 2, "BIO2"),
    ("IMGID:1\nGeorge\t\n", 2, "unknown label ''"),
    ("George\tB-PER\n", 1, "expected an 'IMGID:<id>' line"),
    ("IMGID:1\na\tO\n\nb\tO\n", 4, "expected an 'IMGID:<id>' line"),
    ("", 1, "empty"),
    ("\n \n\n", 1, "empty"),
    ("IMGID:\na\tO\n", 1, "without an image id"),
    ("IMGID:1\na\tO\n\nIMGID:   \n", 4, "without an image id"),
    ("IMGID:\nIMGID:\n", 1, "without an image id"),
    ("IMGID:5\nIMGID:6\n", 1, "no token lines"),
    ("IMGID:1\na\tO\n\nIMGID:2\n\nIMGID:3\nb\tO\n", 4, "no token lines"),
    ("IMGID:1\na\tO\n\nIMGID:2", 4, "no token lines"),
    ("IMGID:1\n\tO\n", 2, "empty token"),
    ("IMGID:1 2\na\tO\n", 1, "spaces or control characters"),
    (b"IMGID:1\nok\tO\n\xc3\x28\tO\n", 3, "not UTF-8"),
    (b"IMGID:1\nok\tO\nok\tO\n\xff\xfe\n", 4, "not UTF-8"),
    ("IMGID:1\nHello\tO\n".encode("utf-16"), 1, "UTF-16"),
    ("IMGID:1\nHello\tO\n".encode("utf-16-le"), 1, "NUL"),
    (bytes(range(256)), 1, "NUL"),
    (b"IMGID:1\rHello\tO\r", 1, "bare CR"),
]


@pytest.mark.parametrize("content, line, words", TWITTER_ERRORS)
def test_malformed_twitter_files_name_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path, content)
    with pytest.raises(DataFormatError) as caught:
        read_twitter(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message
    assert "\n" not in message


def test_missing_file_is_a_data_format_error(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_twitter(tmp_path / "absent.txt")
    with pytest.raises(DataFormatError, match="folder"):
        read_twitter(tmp_path)


# ---- JSON lines --------------------------------------------------------------------------


def test_jsonl_with_and_without_labels_and_images(tmp_path):
    content = (
        '{"tokens": ["Great", "to", "see", "Jordan"], "labels": ["O", "O", "O", "B-OTHER"], "image": "42"}\n'
        "\n"
        '{"tokens": ["no", "labels"], "image": "pics/pic.png", "id": 7}\n'
        '{"tokens": ["\\u200b", "text", "only"], "labels": null}\r\n'
    )
    path = write(tmp_path, content, "posts.jsonl")
    posts = read_jsonl(path)
    assert posts[0].labels == ["O", "O", "O", "B-MISC"] and posts[0].image == "42"
    assert posts[1].labels is None and posts[1].image == "pics/pic.png"
    assert posts[2].tokens == ["\u200b", "text", "only"] and posts[2].image is None
    assert posts[2].origin == f"{path}:4"


JSONL_ERRORS = [
    ('{"tokens": ["a"], "image": "/etc/passwd"}\n', 1, "is an absolute path"),
    ('{"tokens": ["a"]}\n{"tokens": ["a"], "image": "pics/../../x.jpg"}\n', 2, "contains '..'"),
    ('{"tokens": ["a"]}\n{"tokens": ["a", "b"], "labels": ["O"]}\n', 2, "2 tokens but 1 labels"),
    ('{"tokens": ["a"]}\n\n{"tokens": ["a"], "labels": ["B_PER"]}\n', 3, "unknown label 'B_PER'"),
    ('{"tokens": ["a"]\n', 1, "invalid JSON"),
    ("[[[\n", 1, "invalid JSON"),
    ("[" * 100_000 + "\n", 1, "nested too deeply"),
    ('["a", "b"]\n', 1, "expected a JSON object"),
    ('{"words": ["a"]}\n', 1, "unknown key 'words'"),
    ('{"labels": ["O"]}\n', 1, "missing 'tokens'"),
    ('{"tokens": ["a"], "image_id": "1.jpg"}\n', 1, "unknown key 'image_id' (did you mean 'image'?)"),
    ('{"tokens": ["a"], "label": ["O"]}\n', 1, "unknown key 'label' (did you mean 'labels'?)"),
    ('{"tokens": "a b"}\n', 1, "'tokens' must be a list of non-empty strings"),
    ('{"tokens": ["a", 3]}\n', 1, "'tokens' must be a list"),
    ('{"tokens": ["a", ""]}\n', 1, "'tokens' must be a list"),
    ('{"tokens": []}\n', 1, "'tokens' is empty"),
    ('{"tokens": ["a"], "labels": "O"}\n', 1, "'labels' must be a list"),
    ('{"tokens": ["a"], "image": 5}\n', 1, "'image' must be"),
    ('{"tokens": ["a"], "image": " "}\n', 1, "'image' ' ' is empty"),
    ("", 1, "empty"),
    (b'{"tokens": ["a"]}\n{"tokens": ["\xe9"]}\n', 2, "not UTF-8"),
]


@pytest.mark.parametrize("content, line, words", JSONL_ERRORS)
def test_malformed_jsonl_names_file_and_line(tmp_path, content, line, words):
    path = write(tmp_path, content, "posts.jsonl")
    with pytest.raises(DataFormatError) as caught:
        read_jsonl(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message
    assert "\n" not in message


# ---- dataset layout ----------------------------------------------------------------------


def make_dataset(root: Path, name: str, suffix: str = ".txt") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        if suffix == ".txt":
            write(folder, TWO_TWEETS, f"{split}.txt")
        else:
            write(folder, '{"tokens": ["a", "Paris"], "labels": ["O", "B-LOC"]}\n', f"{split}{suffix}")


def test_read_posts_picks_the_reader_by_extension(tmp_path):
    assert read_posts(write(tmp_path, '{"tokens": ["a"]}\n', "x.json"))[0].tokens == ["a"]
    assert read_posts(write(tmp_path, TWO_TWEETS, "x.conll"))[0].image == "11"


def test_load_dataset_from_txt_or_jsonl(tmp_path):
    make_dataset(tmp_path, "tw")
    make_dataset(tmp_path, "mine", ".jsonl")
    assert {k: len(v) for k, v in load_dataset(tmp_path, "tw").items()} == {"train": 2, "valid": 2, "test": 2}
    assert load_split(tmp_path, "mine", "test")[0].labels == ["O", "B-LOC"]


def test_absent_dataset_or_split_says_what_was_looked_for(tmp_path):
    with pytest.raises(UmtError, match=f"does not exist.*{DATA_ROOT_ENV}"):
        load_dataset(tmp_path, "nothing")
    make_dataset(tmp_path, "tw")
    (tmp_path / "tw" / "valid.txt").unlink()
    with pytest.raises(UmtError, match="valid.txt, .*valid.jsonl"):
        load_dataset(tmp_path, "tw")
    write(tmp_path / "tw", '{"tokens": ["a"]}\n', "test.jsonl")
    with pytest.raises(UmtError, match="ambiguous test split"):
        load_split(tmp_path, "tw", "test")


def test_data_root_default_and_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    assert default_data_root() == Path("data")
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    assert default_data_root() == tmp_path
    assert images_dir(tmp_path, "twitter2017") == tmp_path / "twitter2017_images"
