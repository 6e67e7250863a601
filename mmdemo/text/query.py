"""A search box's words, as the text search reads them.

    sign exit          words: each found in an image's text (folded, see normalize.py) counts;
                       a word of five letters or more also matches with one edit ("exlt", "gatte")
    "gate b22"         a phrase: its exact letters and digits, in order, required (case, width,
                       spaces and punctuation aside: OCR drops and invents them)
    text:invoice       a word the image's text must hold
Everything but the `text:` prefixes and the quotes' marks is what CLIP sees too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmdemo.text.normalize import fold, has_han, plain

FUZZY_FROM = 5  # letters: a word this long matches with one edit
_TOKEN = re.compile(r'"([^"]*)"|(\S+)')


@dataclass(frozen=True)
class TextQuery:
    """What to look for in images' text."""

    words: tuple[str, ...] = ()  # folded; each found counts
    phrases: tuple[str, ...] = ()  # plain; every one required, exactly
    required: tuple[str, ...] = ()  # folded; every one required
    whole: str = ""  # the whole query folded: found as it is, the match is exact
    clip_text: str = ""  # the query as CLIP reads it

    @property
    def empty(self) -> bool:
        return not (self.words or self.phrases or self.required)

    @property
    def strict(self) -> bool:
        """Only images whose text matches may be results (a phrase or a `text:` word was given)."""
        return bool(self.phrases or self.required)


def parse(query: str) -> TextQuery:
    """The text search's reading of a query (see the module docstring)."""
    words: list[str] = []
    phrases: list[str] = []
    required: list[str] = []
    seen: list[str] = []
    for quoted, bare in _TOKEN.findall(query or ""):
        if quoted:
            if phrase := plain(quoted):
                phrases.append(phrase)
                seen.append(phrase)
            continue
        if bare.lower().startswith("text:"):
            if word := fold(bare[5:]):
                required.append(word)
                seen.append(bare[5:])
            continue
        seen.append(bare)
        if _searchable(word := fold(bare)):
            words.append(word)
    clip_text = " ".join(seen)
    return TextQuery(tuple(words), tuple(phrases), tuple(required), fold(clip_text), clip_text)


def _searchable(word: str) -> bool:
    """One Latin letter or digit matches half of all text: a word must have two, or be Chinese."""
    return len(word) >= 2 or (len(word) == 1 and has_han(word))
