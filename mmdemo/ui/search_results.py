"""How search results are shown: each tile's caption, and the score table's rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmdemo.i18n import DEFAULT
from mmdemo.photos.facts import Said, exact_places, said
from mmdemo.search.store import Hit, Item
from mmdemo.video.scenes import clock

# Of the score table (locale keys search.col.*): score is what the results are ranked by (CLIP's cosine, or
# the fusion of CLIP's rank and the text's: mmdemo.search.fusion), then each ranker's own, the text matched,
# what the photo's EXIF says (mmdemo.photos), and for a video's moment its seconds and the video's URL.
COLUMNS = (
    "rank",
    "score",
    "name",
    "gallery",
    "clip",
    "text",
    "read",
    "taken",
    "camera",
    "place",
    "start",
    "end",
    "video",
)
RERANKED = ("rank", "clip_rank", "score", "yes", "name", "gallery", "read")  # ... after a re-rank


def facts_of(source: str, hit: Hit, language: str, library_places: str) -> Said:
    """What is shown of a hit's date, camera and place (exact places only where allowed: mmdemo.photos.facts)."""
    return said(hit.facts, language, exact_places(source, library_places))


def shown_name(item: Item) -> str:
    """An image's name; a video's moment as "name @ m:ss" (where it starts)."""
    return f"{item.name} @ {clock(item.start)}" if item.moment else item.name


def caption(hit: Hit, facts: Said | None = None) -> str:
    """A result's caption: the text that matched (query words in « »), else CLIP's cosine; its name; then when
    and where it was taken."""
    name = shown_name(hit.item)
    if hit.matched:
        first = f"{hit.matched} · {name}"
    elif hit.clip is None and not hit.scores.fused:  # listed by a filter alone: no score to show
        first = name
    else:
        first = f"{hit.clip if hit.clip is not None else hit.score:.3f} · {name}"
    when_where = " · ".join(part for part in (facts.taken, facts.place) if part) if facts else ""
    return f"{first}\n{when_where}" if when_where else first


def results(
    hits: list[tuple[str, Hit]],
    language: str = DEFAULT,
    library_places: str = "city",
    video_url: Callable[[str, Item], str] | None = None,
) -> tuple[list[tuple[str, str]], list[list[Any]]]:
    """(thumbnail, caption) pairs and table rows (see COLUMNS) for tagged hits; `video_url(source, item)` is a
    moment's video as the client reaches it."""
    facts = [facts_of(source, hit, language, library_places) for source, hit in hits]
    shown = [(hit.item.thumb, caption(hit, said)) for (_, hit), said in zip(hits, facts, strict=True)]
    table = [
        [
            rank,
            round(hit.score, 4),
            shown_name(hit.item),
            source,
            rounded(hit.scores.clip),
            hit.scores.text,
            hit.matched,
            said.taken,
            said.camera,
            said.place,
            *_moment(source, hit.item, video_url),
        ]
        for rank, ((source, hit), said) in enumerate(zip(hits, facts, strict=True), 1)
    ]
    return shown, table


def _moment(source: str, item: Item, video_url: Callable[[str, Item], str] | None) -> list[Any]:
    if not item.moment:
        return [None, None, ""]
    return [item.start, item.end, video_url(source, item) if video_url else ""]


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
