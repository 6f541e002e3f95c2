"""A tweet-aware tokenizer that keeps every token's character offsets in the original text.

``umt predict`` takes raw post text; the model was trained on the words of a dataset, so the
tokenizer follows the Twitter datasets' own conventions (checked on Twitter-2015 and -2017):

- URLs (``http://``, ``https://``, ``www.``) stay one token, trailing punctuation excluded;
- ``@mentions`` and ``#hashtags`` stay one token (``style="tweet"``, Twitter-2015), or split
  into the sign and the name (``style="tweet-split"``, Twitter-2017: ``#`` ``NBAFinals``);
- contractions split at the apostrophe, as both datasets do: ``It's`` -> ``It`` ``'`` ``s``;
- an emoji is one token, with its skin-tone modifiers, variation selector and zero-width-joiner
  sequence (``👩‍👩‍👧`` is one token), and so is an ASCII emoticon (``:-)``, ``;D``, ``<3``);
  a flag is one token too: a pair of regional indicator letters (``🇫🇷``; ``🇫🇷🇩🇪`` is two
  flags, a lone letter a token of its own) or a subdivision flag, ``🏴`` with its tag characters
  and cancel tag (``🏴󠁧󠁢󠁳󠁣󠁴󠁿``);
- words are runs of letters, digits and ``_`` (so ``7:30pm`` -> ``7`` ``:`` ``30pm``), numbers keep
  their decimal point (``3.5``), and every other non-space character is a token of its own.

Each token is a slice of the text: ``text[start:end] == token`` always holds, which is what
lets an entity carry ``start``/``end`` offsets into the text the user gave. A run records the
style its training data used (:func:`detect_style`), and ``umt predict`` uses it by default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

STYLES = ("tweet", "tweet-split")
DEFAULT_STYLE = "tweet"

#: Regional indicator letters: two make a flag (🇫 🇷 -> 🇫🇷), paired from the left.
_REGIONAL = "\U0001f1e6-\U0001f1ff"
_EMOJI_BASE = (
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, supplemental symbols (a lone flag letter)
    "\u2600-\u27bf"  # miscellaneous symbols and dingbats (☀ ⚾ ✈ ❤)
    "\u2b00-\u2bff"  # arrows and stars (⭐)
    "\u2300-\u23ff"  # technical (⌚ ⏰)
    "\u3030\u303d\u3297\u3299\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u21aa"
)
#: Variation selector, keycap, skin tones, and the tag characters and cancel tag that follow 🏴 in
#: a subdivision flag (🏴 + "gbsct" in tags + cancel: Scotland's flag).
_EMOJI_TAIL = "\ufe0f\u20e3\U0001f3fb-\U0001f3ff\U000e0020-\U000e007f"
#: One emoji: a flag's pair of letters first (alternatives are tried in order), else one symbol.
_EMOJI_ONE = f"(?:[{_REGIONAL}]{{2}}|[{_EMOJI_BASE}])[{_EMOJI_TAIL}]*"
_EMOJI = f"{_EMOJI_ONE}(?:\u200d{_EMOJI_ONE})*"
_URL = r"(?:https?://|www\.)\S+?(?=[.,!?;:)\]\"']*(?:\s|$))"
#: ASCII emoticons (:-) ;) :D :/ <3), not followed by a letter or digit (so "Note:Data" stays words).
_EMOTICON = r"(?:[:;=][-o^']?[)(\]\[dDpP/\\|*]+|<3)(?!\w)"
_NUMBER = r"\d+(?:[.,]\d+)+(?![\w])"
_WORD = r"[^\W_]\w*|_+\w*"
#: Any other visible character; invisible format characters (zero-width space and joiners outside
#: an emoji, soft hyphen, byte-order mark) separate tokens like spaces do.
_OTHER = "[^\\s\u200b-\u200d\u2060\ufeff\u00ad]"
_SIGNED = {
    "tweet": r"[@#][^\W]\w*",  # @name, #tag: one token
    "tweet-split": None,  # the sign falls through to the one-character rule
}


def _pattern(style: str) -> re.Pattern[str]:
    parts = [_URL, _EMOJI, _EMOTICON]
    if _SIGNED[style] is not None:
        parts.append(_SIGNED[style])
    parts += [_NUMBER, _WORD, _OTHER]
    return re.compile("|".join(f"(?:{p})" for p in parts))


_PATTERNS = {style: _pattern(style) for style in STYLES}


@dataclass(frozen=True)
class Token:
    text: str
    start: int  # character offset of the token's first character in the original text
    end: int  # one past its last character


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"tokenizer style {style!r}: expected one of {', '.join(STYLES)}")
    return style


def tokenize(text: str, style: str = DEFAULT_STYLE) -> list[Token]:
    """The tokens of ``text`` with their offsets; whitespace of any kind separates tokens."""
    return [Token(m.group(), m.start(), m.end()) for m in _PATTERNS[check_style(style)].finditer(text)]


def locate(text: str, words: Sequence[str]) -> list[tuple[int, int]] | None:
    """Offsets of already-split ``words`` found in order in ``text``, or None if one is absent."""
    spans, cursor = [], 0
    for word in words:
        at = text.find(word, cursor)
        if at < 0 or not word:
            return None
        spans.append((at, at + len(word)))
        cursor = at + len(word)
    return spans


def detect_style(words: Iterable[str]) -> str:
    """The convention of a dataset's words: ``tweet-split`` when ``@`` and ``#`` mostly stand
    alone (Twitter-2017), else ``tweet`` (Twitter-2015 and most corpora)."""
    alone = attached = 0
    for word in words:
        if word in ("@", "#"):
            alone += 1
        elif len(word) > 1 and word[0] in "@#":
            attached += 1
    return "tweet-split" if alone > attached else DEFAULT_STYLE
