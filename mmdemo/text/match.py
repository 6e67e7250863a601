"""Does an image's text match a query, how well, and where (to mark the words in what was read)."""

from __future__ import annotations

from dataclasses import dataclass

from mmdemo.text.normalize import find, fold, fold_mapped, squash
from mmdemo.text.query import FUZZY_FROM, TextQuery

FUZZY_CREDIT = 0.7  # a word found with one edit counts this much of one found as typed
MIN_SHARE = 0.5  # of the query's letters an image's text must hold to be a match (no phrase, no text:)
MARK_OPEN, MARK_CLOSE = "«", "»"


@dataclass(frozen=True)
class TextMatch:
    """An image whose text matches: how much of the query (0..1), whether exactly, and the lines marked."""

    hash: str
    score: float
    exact: int  # 2: the whole query as typed (folded) is in the text; 1: every word is; 0: partly, or with edits
    marked: str  # the matching lines, the query's words between « »

    @property
    def rank_key(self) -> tuple[int, float]:
        return self.exact, self.score


def match(query: TextQuery, content_hash: str, text: str, marked: bool = True) -> TextMatch | None:
    """The match of `query` in an image's `text`, or None (see mmdemo.text.query for the rules); without
    `marked`, its score alone (the lines are not marked: scoring many candidates, few are shown)."""
    folded = fold(text)
    squashed = squash(text)
    if any(squash(phrase) not in squashed for phrase in query.phrases):
        return None
    spans: list[str] = [fold(p) for p in query.phrases]
    credit = float(sum(len(s) for s in spans))
    total = credit
    every_exact = True
    for word in (*query.required, *query.words):
        found = find(word, folded, fuzzy=len(word) >= FUZZY_FROM)
        total += len(word)
        if found is None:
            if word in query.required:
                return None
            every_exact = False
            continue
        start, end, exact = found
        every_exact &= exact
        credit += len(word) * (1.0 if exact else FUZZY_CREDIT)
        spans.append(folded[start:end])
    share = credit / total if total else 0.0
    if not spans or (not query.strict and share < MIN_SHARE):
        return None
    exact_level = 2 if len(query.whole) >= 2 and query.whole in folded else 1 if every_exact else 0
    return TextMatch(content_hash, round(share, 4), exact_level, mark(text, spans) if marked else "")


def mark(text: str, pieces: list[str]) -> str:
    """The lines of `text` holding any folded piece, each found piece between « and », joined by ' / '."""
    shown = []
    for line in text.split("\n"):
        mapped = fold_mapped(line)
        spans: list[tuple[int, int]] = []
        for piece in filter(None, pieces):
            at = mapped.text.find(piece)
            while at >= 0:
                spans.append((mapped.origin[at], mapped.origin[at + len(piece) - 1] + 1))
                at = mapped.text.find(piece, at + len(piece))
        if spans:
            shown.append(_wrap(line, _merged(spans)))
    return " / ".join(shown)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _wrap(line: str, spans: list[tuple[int, int]]) -> str:
    out, last = [], 0
    for start, end in spans:
        out += [line[last:start], MARK_OPEN, line[start:end], MARK_CLOSE]
        last = end
    return "".join([*out, line[last:]])
