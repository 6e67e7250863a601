"""`PhotoAsker(settings, galleries, backend)`: the ask features over a visitor's galleries, for the UI and the tools.

It turns what a page or an agent holds (results as (gallery, image id) pairs, a private gallery's
token) into images the chat model can see, within the Settings' limits, and keeps the re-rank cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmdemo.ask.about import Shown, ask_budget
from mmdemo.ask.rerank import Candidate, Reranked, ScoreCache, rerank
from mmdemo.chat.prompt import ImageBudget
from mmdemo.embedding.images import BadImageError
from mmdemo.errors import UserFacingError
from mmdemo.photos.filters import described
from mmdemo.search.galleries import LIBRARY, read_query, session_gallery
from mmdemo.video.clips import cut_clip
from mmdemo.video.scenes import clock

if TYPE_CHECKING:
    from mmdemo.chat.pipeline import ChatBackend
    from mmdemo.config import Settings
    from mmdemo.search.galleries import Galleries
    from mmdemo.search.store import Hit, Item

Tagged = tuple[str, "Hit"]  # ("shared" or "yours", a hit): what Galleries.search returns


@dataclass(frozen=True)
class RerankOutcome:
    """Hits in their new order, each one's CLIP rank and P(yes) (None: beyond the re-ranked top), the run."""

    hits: list[Tagged]
    clip_ranks: list[int]
    yes: list[float | None]
    run: Reranked


@dataclass(frozen=True)
class Found:
    """The results that still exist, as the chat model sees them, and how many were deleted meanwhile."""

    shown: list[Shown]
    gone: int


class PhotoAsker:
    """The chat model over a visitor's search results and images."""

    def __init__(self, settings: Settings, galleries: Galleries, backend: ChatBackend[Any]) -> None:
        self.settings, self.galleries, self.backend = settings, galleries, backend
        self.cache = ScoreCache()

    @property
    def budget(self) -> ImageBudget:
        return ask_budget(self.settings.ask_max_pixels, self.settings.max_image_pixels)

    def check_rerank(self, k: int) -> None:
        if k > self.settings.rerank_max:
            raise UserFacingError(key="search.rerank_over_cap", k=k, limit=self.settings.rerank_max)

    def rerank(self, query: str, hits: list[Tagged], k: int) -> RerankOutcome:
        """The top `k` of `hits` (fewer when there are fewer) in the chat model's order, the rest after them.
        UserFacingError when the chat model cannot answer (the caller keeps CLIP's order and says why)."""
        self.check_rerank(k)
        # The words CLIP saw, for every caller (a query's filters chose the candidates: mmdemo.photos.filters).
        query = described(read_query(query, self.settings.max_query_chars))
        k = min(k, len(hits))
        candidates = [Candidate(hit.item.hash, hit.item.thumb, hit.score) for _, hit in hits[:k]]
        run = rerank(self.backend, query, candidates, self.budget, self.cache, self.settings.rerank_batch)
        order = [*run.order, *range(k, len(hits))]
        yes: list[float | None] = [run.scores[i] if i < k else None for i in order]
        return RerankOutcome([hits[i] for i in order], [i + 1 for i in order], yes, run)

    def item(self, source: str, item_id: int, token: str | None) -> Item | None:
        """An indexed image by its gallery ("shared", or "yours" with the session's token) and id."""
        if source == "shared":
            return self.galleries.library().store.item(item_id)
        if source == "yours" and token:
            return self.galleries.get(session_gallery(token)).store.item(item_id)
        return None

    def found(self, ids: Sequence[Any], token: str | None, limit: int | None = None) -> Found:
        """The results `ids` (as the page holds them: (gallery, id) pairs) that still exist, numbered by rank."""
        shown, gone = [], 0
        for rank, pair in enumerate(list(ids or [])[:limit], 1):
            item = self._pair_item(pair, token)
            if item is None:
                gone += 1
            else:
                shown.append(self.shown(rank, item, pair[0], token))
        return Found(shown, gone)

    def yours(self, token: str | None) -> list[Shown]:
        """Every image of the session's private gallery."""
        items = self.galleries.get(session_gallery(token)).store.items() if token else []
        return [self.shown(rank, it, "yours", token) for rank, it in enumerate(items, 1)]

    def shown_hits(self, hits: Sequence[Tagged], token: str | None) -> list[Shown]:
        """Search hits as the chat model sees them, numbered from 1."""
        return [self.shown(rank, hit.item, source, token) for rank, (source, hit) in enumerate(hits, 1)]

    def shown(self, rank: int, item: Item, source: str, token: str | None) -> Shown:
        """An image as the chat model sees it: with the text OCR read in it (MMDEMO_OCR_IN_CHAT)."""
        text = ""
        if self.settings.ocr_in_chat and (reader := self.galleries.text) is not None:
            gallery = LIBRARY if source == "shared" else session_gallery(token or "")
            reading = reader.reading(gallery, item.hash)
            text = reading.text if reading else ""
        if item.moment:  # the moment's clip, which the chat model samples as a video
            return Shown(rank, f"{item.name} @ {clock(item.start)}", self._clip(item, source, token), text)
        return Shown(rank, item.name, item.thumb, text)

    def _clip(self, item: Item, source: str, token: str | None) -> str:
        """The moment's clip (cut from the video's playable copy once, kept beside it); its keyframe if the
        video cannot be read any more."""
        gallery = self.galleries.library() if source == "shared" else self.galleries.get(session_gallery(token or ""))
        video = gallery.store.video_path(item.video)
        try:
            return str(cut_clip(video, item.start, item.end, video.with_name(f"{item.hash}.mp4")))
        except BadImageError:
            return item.thumb

    def _pair_item(self, pair: Any, token: str | None) -> Item | None:
        # Anything in a request is the sender's choice: only a (str, int) pair names an image.
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            return None
        try:
            return self.item(pair[0], int(pair[1]), token)
        except (TypeError, ValueError, OverflowError):
            return None
