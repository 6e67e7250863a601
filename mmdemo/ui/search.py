"""Search tab: find images by description or by example, in the shared library and your own uploads.

The library (the bundled gallery/ plus anything indexed with `python -m mmdemo index`) is shared
read-only. What a browser session uploads goes into a gallery of its own, under a random token
kept in that session's state: no other session can search it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import gradio as gr

from mmdemo.ask.service import PhotoAsker, RerankOutcome
from mmdemo.config import Settings
from mmdemo.embedding.images import MEDIA_SUFFIXES
from mmdemo.errors import UserFacingError
from mmdemo.i18n import has_cjk
from mmdemo.models.registry import MULTILINGUAL_CLIP, resolve
from mmdemo.photos.filters import described
from mmdemo.search.galleries import Galleries, read_query, session_gallery
from mmdemo.search.stages import LIBRARY
from mmdemo.search.store import Hit, Item
from mmdemo.serving import hosting
from mmdemo.serving.media import base_url, media_url
from mmdemo.ui.ask import AskPanel, rerank_said
from mmdemo.ui.common import (
    friendly_errors,
    indexing_said,
    measured,
    number,
    session,
    text_input,
    upload_path,
    videos_said,
)
from mmdemo.ui.fairness import reroute
from mmdemo.ui.fullsize import FullSize
from mmdemo.ui.i18n import headers, language, say, t, table_value
from mmdemo.ui.mine import YourImages
from mmdemo.ui.search_filters import FilterControls
from mmdemo.ui.search_results import COLUMNS, RERANKED, results, rounded
from mmdemo.ui.serve import chat_queue, clip_queue

log = logging.getLogger(__name__)

TOP_K_MAX = 48  # results per search
LIBRARY_WAIT_S = 120  # a search waits for the bundled photos at most this long, then answers from what is indexed
# gallery, table (value), ids, selection, the re-rank's line
Shown = tuple[list[tuple[str, str]], Any, list[tuple[str, int]], None, str]


class SearchTab:
    """The Search tab: `render` lays it out and wires the events; each event is a method."""

    def __init__(self, settings: Settings, galleries: Galleries, asker: PhotoAsker) -> None:
        self.settings = settings
        self.galleries = galleries
        self.asker = asker
        self.ask = AskPanel(asker)
        self.mine = YourImages(settings, galleries)
        self.full = FullSize(settings, galleries, self.mine.originals)
        self.noticed: set[str] = set()  # sessions told that their CJK query met an English-only model
        gallery_dir = settings.gallery_dir
        self.bundled = (
            sum(1 for p in gallery_dir.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES) if gallery_dir.is_dir() else 0
        )
        # Model-running events, wrapped as bound methods (names and docstrings stay the API's). The other
        # search events call the unwrapped search, so that each request is counted once, by its own event.
        self._results = self.search
        self.search = friendly_errors(measured("search", hosting.gpu(duration=30)(self.search)))
        self.remove_selected = friendly_errors(self.remove_selected)
        self.search_now = friendly_errors(measured("search", hosting.gpu(duration=30)(self.search_now)))
        self.rerank_shown = friendly_errors(measured("rerank", hosting.gpu(duration=60)(self.rerank_shown)))
        self.find_similar = friendly_errors(measured("search", hosting.gpu(duration=30)(self.find_similar)))
        if "clip" in settings.preload:  # index the bundled photos while the page loads
            threading.Thread(target=self._index_library, name="mmdemo-library", daemon=True).start()
        # (Otherwise they are indexed as soon as a CLIP is resident: mmdemo.search.galleries.)

    def _index_library(self) -> None:
        try:
            self.galleries.library(wait=True)
        except UserFacingError:
            pass  # CLIP could not be loaded: the manager logged why, and searches will say it
        except Exception:  # a background thread: nobody else would see it
            log.exception("indexing the bundled photos failed")

    def render(self, app: gr.Blocks) -> None:
        """Lay out the tab and wire its events (inside a `gr.Tab`)."""
        token = self._token_state()
        result_ids = gr.State([])
        selected = gr.State(None)  # the clicked result's (gallery, image id): never an index into newer results
        with gr.Row():
            with gr.Column(scale=4):
                query = self._query_box()
                FilterControls().render(query)
                with gr.Row():
                    top_k = gr.Slider(1, TOP_K_MAX, value=12, step=1, label=t("search.top_k"))
                    min_score = gr.Slider(-1.0, 1.0, value=-1.0, step=0.01, label=t("search.min_score"))
                    rerank = gr.Slider(
                        0, self.settings.rerank_max, value=0, step=1, label=t("search.rerank"), elem_id="search-rerank"
                    )
            query_image = gr.Image(
                type="filepath", label=t("search.by_example"), height=160, scale=1, elem_id="search-query-image"
            )
        with gr.Row():
            go = gr.Button(t("search.button"), variant="primary", scale=3, elem_id="search-go")
            similar = gr.Button(t("search.similar"), scale=1, elem_id="search-similar")
        found = gr.Gallery(
            label=t("search.results"), columns=4, height="auto", object_fit="contain", elem_id="search-results"
        )
        self.full.render(found, result_ids, selected, token)  # the clicked result, its text read
        notice = gr.Markdown(elem_id="search-notice")  # e.g. a Chinese query on an English-only model
        # The text of images being read in the background (uploads, the library): their words are not found yet.
        reading = gr.Markdown(elem_id="search-text-progress")
        gr.Timer(5.0).tick(self.reading, token, reading, api_visibility="private", queue=False)
        rerank_info = gr.Markdown(elem_id="search-rerank-info")  # what the re-rank cost, or why it was skipped
        table = gr.Dataframe(headers=headers("search.col", COLUMNS), label=t("search.scores"), elem_id="search-table")
        self.ask.render(app, result_ids, selected, token)
        with gr.Accordion(t("search.add_box"), open=False):
            # No file_types filter: gradio would reject the whole batch for one bad file; ours skips it.
            uploads = gr.File(file_count="multiple", label=t("search.uploads"), elem_id="search-uploads")
            with gr.Row():
                add = gr.Button(t("search.add"))
                remove = gr.Button(t("search.remove"))
            report = gr.Markdown(elem_id="search-report")
        show_mine = self.mine.render(token, report)

        queue = clip_queue(self.settings)
        inputs = [query, query_image, top_k, min_score, rerank, token]
        outputs = [found, table, result_ids, selected, rerank_info]
        self._wire_search(inputs, outputs, [go.click, query.submit], notice)
        show_mine(
            add.click(self.mine.index_images, [uploads, token], [report, token], api_name="index_images", **queue)
        )
        show_mine(remove.click(self.remove_selected, [selected, result_ids, token], report, api_name="remove_selected"))
        similar.click(
            self.find_similar, [selected, top_k, min_score, token], outputs, api_visibility="private", **queue
        )
        gr.Button("remove_images (API)", visible=False).click(
            self.mine.remove_images, [gr.Textbox(visible=False), token], report, api_name="remove_images"
        )
        # The empty table's headers in the visitor's language (the layout is built once, in English).
        app.load(self.empty_table, None, table, api_visibility="private", queue=False)
        app.unload(self.end_session)

    def _wire_search(
        self, inputs: list[Any], outputs: list[Any], triggers: list[Callable[..., Any]], notice: gr.Markdown
    ) -> None:
        """The searches' events. The API's /search answers in one call, re-ranked when asked (then queued in the
        chat's line, mmdemo.ui.fairness.reroute). The page shows CLIP's results at once and re-ranks them in a
        second step, in the chat's queue: chat-model work never holds a slot of the searches' line."""
        queue = clip_queue(self.settings)
        searched_api = gr.Button("search (API)", visible=False).click(
            self.search, inputs, outputs, api_name="search", preprocess=False, **queue
        )
        # An API search asked to re-rank is chat-model work: it is queued as this twin, in the chat's queue.
        reranked_api = gr.Button("search reranked (API)", visible=False).click(
            self.search, inputs, outputs, api_visibility="private", preprocess=False, **chat_queue(self.settings)
        )
        reroute(searched_api, reranked_api, lambda data: float(data[4] or 0) > 0)
        query = inputs[0]
        for trigger in triggers:
            searched = trigger(self.search_now, inputs, outputs, api_visibility="private", preprocess=False, **queue)
            searched.then(self.language_notice, query, notice, api_visibility="private")
            page_rerank = {"api_visibility": "private", "preprocess": False, **chat_queue(self.settings)}
            searched.success(self.rerank_shown, inputs, outputs, **page_rerank)

    def _query_box(self) -> gr.Textbox:
        """The query, as long as a search may take (MMDEMO_MAX_QUERY_CHARS: longer is refused anyway)."""
        return gr.Textbox(
            label=t("search.query"),
            placeholder=t("search.query_placeholder"),
            max_length=self.settings.max_query_chars,
            elem_id="search-query",
        )

    def reading(self, token: str | None = None, request: gr.Request | None = None) -> str:
        """What indexing does in the background now ('' when nothing): the text in images being read, the library's
        videos and this session's being cut."""
        videos = self.galleries.videos
        lines = [indexing_said(self.galleries.stages, request)]
        if left := len(videos.state(LIBRARY).waiting) + bool(videos.state(LIBRARY).cutting):
            lines.append(say(request, "videos.library", n=left))
        if token:
            lines.append(videos_said(videos.state(session_gallery(token)), request))
        return "\n\n".join(filter(None, lines))

    def empty_table(self, request: gr.Request | None = None) -> Any:
        return table_value("search.col", COLUMNS, [], request)

    def _token_state(self) -> gr.State:
        """The session's gallery token. The gallery is deleted when the tab closes (unload), or, for
        API clients that never say goodbye, when Gradio expires the session's state."""
        # A function, not a bound method: Gradio deep-copies each page's config, State callbacks included,
        # and a bound method would be copied with its object (this tab, its galleries, the models: seconds).
        galleries = self.galleries

        def drop_gallery(token: str | None) -> None:
            if token:
                galleries.drop(session_gallery(token))

        return gr.State(None, delete_callback=drop_gallery)

    def search(
        self,
        query: str,
        query_image: dict[str, Any] | str | None,
        top_k: float,
        min_score: float,
        rerank: float,
        token: str | None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),
    ) -> Shown:
        """Images matching a description (or, when an image is given, looking like it).

        Args:
            query: what to look for, in words (ignored when query_image is given).
            query_image: an example image to find similar ones to (None to search by query).
            top_k: how many results, 1 to 48.
            min_score: leave out results below this cosine similarity (-1 keeps all).
            rerank: re-rank the top this many results of a search in words with the chat model (0 = off).
        Returns:
            (thumbnail, "score · name") pairs, a table of rank / score / name / gallery (after a re-rank
            also the CLIP rank and the chat model's P(yes)), and what the re-rank cost.
        """
        # Gradio's preprocessing is off for this event (see upload_path): check what it would have.
        query = read_query(text_input(query, "query"), self.settings.max_query_chars)
        k, floor = int(number(top_k, 1, TOP_K_MAX, "top_k")), number(min_score, -1.0, 1.0, "min_score")
        rerank_k = self._rerank_wanted(query, query_image, rerank)  # checked before any work
        library = self.galleries.library()
        self._await_library(request, progress)
        mine = self.galleries.get(session_gallery(token)) if token else None
        if len(library) + len(mine or ()) == 0:
            gr.Warning(say(request, "search.gallery_empty"))
            return [], [], [], None, ""
        hits = self.galleries.search(query, upload_path(query_image) if query_image else None, k, floor, token)
        if not hits:
            gr.Info(say(request, "search.no_match", floor=f"{floor:.2f}"))
        table, line = None, ""
        if rerank_k and hits:
            hits, table, line = self._reranked(query, hits, rerank_k, request)
        shown, rows = results(hits, language(request), self.settings.library_places, self._video_url(token, request))
        # New results: any earlier selection is dropped, so Remove cannot hit an image no longer shown.
        return (
            shown,
            table or table_value("search.col", COLUMNS, rows, request),
            [(source, hit.item.id) for source, hit in hits],
            None,
            line,
        )

    def search_now(
        self,
        query: str,
        query_image: Any,
        top_k: float,
        min_score: float,
        rerank: float,
        token: str | None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),
    ) -> Shown:
        """The page's search: CLIP's results at once; a re-rank asked for follows (`rerank_shown`)."""
        shown = self._results(query, query_image, top_k, min_score, 0, token, request, progress)
        k = self._rerank_wanted(query, query_image, rerank)
        pending = k and shown[0]
        return *shown[:4], say(request, "search.rerank_pending", k=min(k, len(shown[0]))) if pending else ""

    def rerank_shown(
        self,
        query: str,
        query_image: Any,
        top_k: float,
        min_score: float,
        rerank: float,
        token: str | None,
        request: gr.Request | None = None,
        progress: gr.Progress = gr.Progress(),
    ) -> Any:
        """The page's re-rank step, in the chat's queue: the search again (CLIP: milliseconds), re-ranked."""
        if not self._rerank_wanted(query, query_image, rerank):
            return tuple(gr.skip() for _ in range(5))
        return self._results(query, query_image, top_k, min_score, rerank, token, request, progress)

    def _video_url(self, token: str | None, request: gr.Request | None) -> Callable[[str, Item], str]:
        """A moment's video as this client reaches it (GET /media/: mmdemo.serving.media)."""

        def url(source: str, item: Item) -> str:
            gallery = (
                self.galleries.library() if source == "shared" else self.galleries.get(session_gallery(token or ""))
            )
            path = gallery.store.video_path(item.video)
            return media_url(base_url(request, self.settings.root_path), str(path), self.settings.data_dir / "media")

        return url

    def _rerank_wanted(self, query: Any, query_image: Any, rerank: Any) -> int:
        """How many results to re-rank (0: none). Only searches in words are re-ranked; over the cap is refused."""
        k = int(number(rerank, 0, TOP_K_MAX, "rerank"))
        self.asker.check_rerank(k)
        return k if described(text_input(query, "query")).strip() and not query_image else 0

    def _reranked(self, query: str, hits: list[tuple[str, Hit]], k: int, request: gr.Request | None) -> Any:
        """The hits in the chat model's order, their table (both ranks, both scores) and what it cost; if the
        chat model cannot answer, CLIP's hits as they were, no table, and why."""
        try:
            outcome: RerankOutcome = self.asker.rerank(query, hits, k)
        except UserFacingError as exc:  # e.g. the chat server is down: the search still answers
            return hits, None, say(request, "search.rerank_skipped", reason=exc.translated(language(request)))
        ranked = zip(outcome.hits, outcome.clip_ranks, outcome.yes, strict=True)
        rows = [
            [rank, clip_rank, round(hit.score, 4), rounded(yes), hit.item.name, source, hit.matched]
            for rank, ((source, hit), clip_rank, yes) in enumerate(ranked, 1)
        ]
        return outcome.hits, table_value("search.col", RERANKED, rows, request), rerank_said(request, outcome.run)

    def _await_library(self, request: gr.Request | None, progress: gr.Progress) -> None:
        """While the bundled photos are being indexed: wait for them when they are few (with progress), so
        that the first visitor of a new deployment does not search an empty library; else say how far it is."""
        if not self.galleries.indexing_library():
            return
        if self.bundled > self.settings.library_wait_images:
            gr.Info(say(request, "search.library_indexing", n=len(self.galleries.library())))
            return
        deadline = time.monotonic() + LIBRARY_WAIT_S
        while not self.galleries.wait_library(0.25) and time.monotonic() < deadline:
            if (done := self.galleries.library_progress()) is not None:
                progress(
                    (done.done, done.total),
                    desc=say(request, "search.library_waiting", done=done.done, total=done.total),
                )

    def remove_selected(
        self,
        selected: tuple[str, int] | None,
        ids: list[tuple[str, int]],
        token: str | None,
        request: gr.Request | None = None,
    ) -> str:
        """Remove the selected result from your gallery (shared images cannot be removed)."""
        if not selected or tuple(selected) not in {tuple(i) for i in ids or []}:
            return say(request, "search.click_first")
        source, item_id = selected
        if source != "yours" or not token:
            return say(request, "search.shared_not_removable")
        removed = self.galleries.get(session_gallery(token)).remove([item_id])
        return say(request, "search.removed_result", n=removed)

    def language_notice(self, query: str, request: gr.Request) -> str:
        """Under the results, once per session: a query in Chinese (or Japanese, Korean) to a CLIP
        model that reads English only returns noise; say so, and which setting fixes it."""
        key = session(request)
        if not isinstance(query, str) or not has_cjk(query) or key in self.noticed:
            return ""
        model_id = self.galleries.manager.resolve_id("clip")
        try:
            multilingual = resolve(model_id).multilingual
        except UserFacingError:
            return ""
        if multilingual:
            return ""
        self.noticed.add(key)
        return say(request, "search.cjk_notice", model=model_id, multilingual=MULTILINGUAL_CLIP)

    def find_similar(
        self,
        selected: tuple[str, int] | None,
        top_k: float,
        min_score: float,
        token: str | None,
        request: gr.Request | None = None,
    ) -> Shown:
        """Images like the selected result (image -> image search from it, in one click)."""
        item = self.full.item(selected, token)
        if item is None:
            raise gr.Error(say(request, "search.click_first"), print_exception=False)
        return self._results("", item.thumb, top_k, min_score, 0, token, request, gr.Progress())

    def end_session(self, request: gr.Request) -> None:
        """The tab closed: drop its private gallery."""
        self.noticed.discard(session(request))
        self.mine.end_session(request)


def build(settings: Settings, galleries: Galleries, asker: PhotoAsker, app: gr.Blocks) -> SearchTab:
    """Add the search components and events to the current Blocks."""
    tab = SearchTab(settings, galleries, asker)
    tab.render(app)
    return tab
