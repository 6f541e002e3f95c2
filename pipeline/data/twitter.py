"""Reader for the Twitter-2015/2017 MNER format.

One tweet after another, each an ``IMGID:<id>`` line followed by ``token<TAB>label`` lines,
tweets separated by blank lines::

    IMGID:1015799
    George	B-PER
    Zimmerman	I-PER
    got	O

What the released files need (see the data README): the last tweet of a Twitter-2015 file
has no blank line after it and is kept; ``OTHER`` is read as ``MISC``; a token is everything
before the LAST tab, kept as is, because some tokens are a no-break space, a zero-width space
or a control character and are still words to be scored. Anything else that does not fit the
format is refused with the file and line, never skipped: a skipped line is a silently
different dataset. A new ``IMGID:`` line directly after a tweet's last token starts the next
tweet even without a blank line, since that reading is unambiguous. An image id is a plain file
name in the image folder: one with a ``/``, a backslash or ``..`` is refused, since a data file
must never name a file outside its image folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from umt.pipeline.data.images import image_id_problem
from umt.pipeline.data.textfile import read_lines
from umt.pipeline.data.types import Post
from umt.pipeline.errors import DataFormatError
from umt.pipeline.labels import normalize_label

IMAGE_PREFIX = "IMGID:"
SEPARATOR = "\t"
BLANK_CHARS = " \t"  # a line of only these separates tweets
PREVIEW_CHARS = 40  # how much of an offending line a message quotes


@dataclass
class _OpenTweet:
    line: int
    image: str
    tokens: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


def _preview(line: str) -> str:
    return repr(line[:PREVIEW_CHARS] + ("..." if len(line) > PREVIEW_CHARS else ""))


def _image_id(path: Path, number: int, line: str) -> str:
    image = line[len(IMAGE_PREFIX) :].strip()
    if not image:
        raise DataFormatError(path, number, f"'{IMAGE_PREFIX}' line without an image id")
    if any(ch.isspace() or not ch.isprintable() for ch in image):
        raise DataFormatError(
            path, number, f"image id {image!r} contains spaces or control characters (a missing line break?)"
        )
    problem = image_id_problem(image, folders=False)
    if problem is not None:
        raise DataFormatError(path, number, f"image id {image!r} {problem}")
    return image


def _token_and_label(path: Path, number: int, line: str) -> tuple[str, str]:
    token, tab, label = line.rpartition(SEPARATOR)
    if not tab:
        raise DataFormatError(path, number, f"line without a tab: expected 'token<TAB>label', found {_preview(line)}")
    if not token:
        raise DataFormatError(path, number, f"empty token before the tab in {_preview(line)}")
    try:
        return token, normalize_label(label.strip())
    except ValueError as e:
        raise DataFormatError(path, number, str(e)) from None


def read_twitter(path: str | Path) -> list[Post]:
    """All tweets of a Twitter-format file, in file order, labels normalised (``OTHER`` -> ``MISC``)."""
    path = Path(path)
    posts: list[Post] = []
    tweet: _OpenTweet | None = None

    def close() -> None:
        if tweet is None:
            return
        if not tweet.tokens:
            raise DataFormatError(path, tweet.line, f"tweet '{IMAGE_PREFIX}{tweet.image}' has no token lines")
        posts.append(Post(tweet.tokens, tweet.labels, tweet.image, origin=f"{path}:{tweet.line}"))

    for number, line in enumerate(read_lines(path), start=1):
        if not line.strip(BLANK_CHARS):
            close()
            tweet = None
        elif line.startswith(IMAGE_PREFIX) and SEPARATOR not in line:  # a token may read "IMGID:..."
            close()
            tweet = _OpenTweet(number, _image_id(path, number, line))
        elif tweet is None:
            raise DataFormatError(
                path, number, f"expected an '{IMAGE_PREFIX}<id>' line to start a tweet, found {_preview(line)}"
            )
        else:
            token, label = _token_and_label(path, number, line)
            tweet.tokens.append(token)
            tweet.labels.append(label)
    close()
    if not posts:
        raise DataFormatError(path, 1, "no tweets: the file is empty")
    return posts
