"""A search over one or more galleries: CLIP's ranking and the text search's, fused into one list, among
the images that pass the query's filters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from mmdemo.photos.filters import Filters, split
from mmdemo.search.fusion import TextHit, fuse
from mmdemo.search.gallery import Named  # re-exported: where callers have always found it
from mmdemo.search.store import Hit
from mmdemo.text.query import TextQuery, parse

if TYPE_CHECKING:
    from mmdemo.search.filtering import Filtering
    from mmdemo.text.stage import TextStage

FUSE_POOL = 100  # candidates each ranker brings to the fusion, at least


def ranked(
    named: Sequence[Named],
    text: TextStage | None,
    query: str,
    image: str | None,
    k: int,
    min_score: float,
    facts: Filtering | None = None,
) -> list[tuple[str, Hit]]:
    """The best `k` images for a description (or, given an image's path, like it), tagged, best first.

    A description is also looked for in the images' text (mmdemo.text.query) when `text` is given, and the
    two rankings fused (mmdemo.search.fusion); each hit carries both scores and the text that matched.
    CLIP's candidates below `min_score` (a cosine) are left out; images found by their text are not.
    With `facts`, the query's filters (mmdemo.photos.filters) restrict the candidates inside each search,
    a query of filters alone lists what passes by date, and each hit carries what its EXIF says.
    """
    filters, rest = split(query) if facts is not None else (Filters(), query)
    if facts is not None and image is None and not rest.strip() and (not filters.empty or filters.sort):
        return facts.with_facts(named, facts.listing(named, filters, k))
    allowed = {n.tag: facts.allowed(n, filters) for n in named} if facts is not None and not filters.empty else {}
    hits = _ranked(named, text, rest, image, k, min_score, allowed)
    if facts is None:
        return hits
    hits = facts.with_facts(named, hits)
    return facts.by_date(hits, filters.sort == "oldest") if filters.sort else hits


def _ranked(
    named: Sequence[Named],
    text: TextStage | None,
    query: str,
    image: str | None,
    k: int,
    min_score: float,
    allowed: dict[str, np.ndarray],
) -> list[tuple[str, Hit]]:
    """CLIP's ranking fused with the text's, among the `allowed` ids of each gallery (all where not given)."""
    words = parse(query) if image is None and text is not None else TextQuery()
    # One query vector for every gallery: they share the CLIP model.
    vector = named[0].gallery.query_vector(words.clip_text or query, image)
    pool = max(k, FUSE_POOL) if not words.empty else k
    searched = [n for n in named if n.tag not in allowed or len(allowed[n.tag])]
    tagged = [
        (n.tag, hit) for n in searched for hit in n.gallery.search_vector(vector, pool, min_score, allowed.get(n.tag))
    ]
    tagged.sort(key=lambda pair: pair[1].score, reverse=True)
    if words.empty or text is None:
        return tagged[:k]
    found = [h for h in text_hits(searched, text, words, pool, marked=0) if _passes(allowed, h.source, h.item.id)]
    best = fuse(tagged[:pool], found, words.strict)[:k]
    # Only the hits shown have their text marked (the lines read, the query's words between « »).
    names = {n.tag: n.name for n in named}
    return [
        (tag, replace(hit, matched=text.mark(names[tag], words, hit.item.hash)) if hit.scores.text is not None else hit)
        for tag, hit in best
    ]


def _passes(allowed: dict[str, np.ndarray], tag: str, item_id: int) -> bool:
    """Whether a text hit passes the filters (`allowed` ids are sorted: mmdemo.photos.table keeps id order)."""
    if tag not in allowed:
        return True
    ids = allowed[tag]
    at = int(np.searchsorted(ids, item_id))
    return at < len(ids) and int(ids[at]) == item_id


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
