"""One form for text read by OCR and text typed by people, so that either finds the other.

`plain`: Unicode NFKC (full-width letters and digits become ASCII), case folded, whitespace runs
made one space. `fold`: `plain` with everything but letters and digits dropped (OCR loses and
invents spaces and dots: "RE16 TGK" read as "RE16TGK", "Gate B22" as "Gate.B22") and the
characters OCR confuses made one (O/0, I/l/1, S/5, B/8): "INV0ICE" and "invoice" fold alike.
Both sides of a match are folded, so folding loses nothing a query could tell apart anyway.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Letters OCR reads as the digit they resemble, and the other way round: each class becomes its digit.
CONFUSIONS = str.maketrans({"o": "0", "i": "1", "l": "1", "|": "1", "s": "5", "b": "8"})
_SPACES = re.compile(r"\s+")


def plain(text: str) -> str:
    """NFKC, case folded, whitespace runs as one space, trimmed."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def squash(text: str) -> str:
    """`plain` with letters and digits only: what a quoted phrase must match exactly (OCR's spacing aside)."""
    return "".join(ch for ch in plain(text) if ch.isalnum())


def fold(text: str) -> str:
    """`squash` with confusable characters made one."""
    return squash(text).translate(CONFUSIONS)


@dataclass(frozen=True)
class Folded:
    """A text's fold, and for each folded character the index of the character it came from."""

    text: str
    origin: tuple[int, ...]


def fold_mapped(text: str) -> Folded:
    """`fold`, remembering where each folded character came from (to mark a match in the original)."""
    chars: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        for part in unicodedata.normalize("NFKC", ch).casefold():
            if part.isalnum():
                chars.append(part.translate(CONFUSIONS))
                origin.append(index)
    return Folded("".join(chars), tuple(origin))


def has_han(text: str) -> bool:
    """True when `text` holds a Chinese character (CJK unified ideographs)."""
    return any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" for ch in text)


def find(term: str, text: str, fuzzy: bool) -> tuple[int, int, bool] | None:
    """Where `term` is in `text`: (start, end, exact); with `fuzzy`, also a substring one edit away."""
    at = text.find(term)
    if at >= 0:
        return at, at + len(term), True
    if not fuzzy:
        return None
    n = len(term)
    for size in (n, n - 1, n + 1):  # substitution first: OCR's usual error
        for start in range(max(0, len(text) - size + 1)):
            if _one_edit(term, text[start : start + size]):
                return start, start + size, False
    return None


def _one_edit(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]
