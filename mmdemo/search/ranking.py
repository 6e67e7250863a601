"""A search over one or more galleries: CLIP's ranking and the text search's, fused into one list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from mmdemo.search.fusion import TextHit, fuse
from mmdemo.search.store import Hit
from mmdemo.text.query import TextQuery, parse

if TYPE_CHECKING:
    from mmdemo.search.gallery import Gallery
    from mmdemo.text.stage import TextStage

FUSE_POOL = 100  # candidates each ranker brings to the fusion, at least


@dataclass(frozen=True)
class Named:
    """A gallery searched: the tag its hits carry ("shared", "yours"), its name, and the gallery."""

    tag: str
    name: str
    gallery: Gallery


def ranked(
    named: Sequence[Named], text: TextStage | None, query: str, image: str | None, k: int, min_score: float
) -> list[tuple[str, Hit]]:
    """The best `k` images for a description (or, given an image's path, like it), tagged, best first.

    A description is also looked for in the images' text (mmdemo.text.query) when `text` is given, and the
    two rankings fused (mmdemo.search.fusion); each hit carries both scores and the text that matched.
    CLIP's candidates below `min_score` (a cosine) are left out; images found by their text are not.
    """
    words = parse(query) if image is None and text is not None else TextQuery()
    # One query vector for every gallery: they share the CLIP model.
    vector = named[0].gallery.query_vector(words.clip_text or query, image)
    pool = max(k, FUSE_POOL) if not words.empty else k
    tagged = [(n.tag, hit) for n in named for hit in n.gallery.search_vector(vector, pool, min_score)]
    tagged.sort(key=lambda pair: pair[1].score, reverse=True)
    if words.empty or text is None:
        return tagged[:k]
    best = fuse(tagged[:pool], text_hits(named, text, words, pool, marked=0), words.strict)[:k]
    # Only the hits shown have their text marked (the lines read, the query's words between « »).
    names = {n.tag: n.name for n in named}
    return [
        (tag, replace(hit, matched=text.mark(names[tag], words, hit.item.hash)) if hit.scores.text is not None else hit)
        for tag, hit in best
    ]


def text_hits(
    named: Sequence[Named], text: TextStage, words: TextQuery, limit: int, marked: int | None = None
) -> list[TextHit]:
    """The indexed images whose text matches, over the galleries, best first (the first `marked` marked)."""
    found: list[TextHit] = []
    for n in named:
        for match in text.search(n.name, words, limit, marked):
            if (item := n.gallery.store.by_hash(match.hash)) is not None:
                found.append(TextHit(n.tag, item, match))
    return sorted(found, key=lambda hit: hit.match.rank_key, reverse=True)[:limit]
