"""One ranked list from CLIP's ranking and the text search's: reciprocal rank fusion, exact text on top.

RRF (Cormack et al., 2009) scores an image sum(weight / (RRF_K + rank)) over the rankers that
ranked it: it needs no calibration between a cosine and a text-match share, and an image both
rankers like beats one only one ranker likes. A text match that holds the whole query as typed
(folded, mmdemo.text.normalize), or each of its words, is put above every other result:
someone who types the words on a sign wants that sign first, whatever CLIP thinks of the photo.
The weights are measured by `python -m mmdemo eval text-search` (bench/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmdemo.search.store import Hit, Item, Scores
from mmdemo.text.match import TextMatch

RRF_K = 60  # the usual constant: ranks far down still count a little
CLIP_WEIGHT = 1.0
TEXT_WEIGHT = 1.0
EXACT_BONUS = 1.0  # per exactness level (TextMatch.exact): more than any fused score can reach without it


@dataclass(frozen=True)
class TextHit:
    """A text search result: where the image is (its gallery's tag), the image, and how its text matched."""

    source: str
    item: Item
    match: TextMatch


def fuse(clip_hits: Sequence[tuple[str, Hit]], text_hits: Sequence[TextHit], strict: bool) -> list[tuple[str, Hit]]:
    """CLIP's hits and the text's, each best first, as one list best first (see the module docstring).

    With `strict` (a quoted phrase or a `text:` word in the query) only images whose text matched are kept.
    """
    fused: dict[tuple[str, int], float] = {}
    clip: dict[tuple[str, int], tuple[str, Hit]] = {}
    text: dict[tuple[str, int], TextHit] = {}
    for rank, (source, hit) in enumerate(clip_hits, 1):
        key = (source, hit.item.id)
        clip[key] = (source, hit)
        fused[key] = CLIP_WEIGHT / (RRF_K + rank)
    for rank, found in enumerate(text_hits, 1):
        key = (found.source, found.item.id)
        text[key] = found
        fused[key] = fused.get(key, 0.0) + TEXT_WEIGHT / (RRF_K + rank) + EXACT_BONUS * found.match.exact
    out = []
    for key, score in fused.items():
        if strict and key not in text:
            continue
        cosine = clip[key][1].scores.clip if key in clip else None
        item = clip[key][1].item if key in clip else text[key].item
        match = text[key].match if key in text else None
        scores = Scores(clip=cosine, text=match.score if match else None, fused=round(score, 6))
        out.append((key[0], Hit(item, scores, match.marked if match else "")))
    return sorted(out, key=lambda pair: -pair[1].score)
